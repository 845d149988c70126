import { createHash } from 'node:crypto';
import { type RadScribeConfig, redactedConfig } from '../config.js';
import type { Queryable } from '../db/pool.js';
import { AuditEventKind } from './audit-codes.js';
import { recordAudit } from './audit-log.js';

/**
 * The detail of the last whole-configuration event: what this start compares against. Changes of
 * one local AE or remote node (src/config/ae-store.ts) are config-change events too, without a hash.
 */
export const SELECT_LAST_CONFIG_CHANGE = `SELECT detail FROM audit_events WHERE kind = $1 AND detail ? 'configSha256'
ORDER BY id DESC LIMIT 1`;

interface ConfigChangeDetail {
  configSha256?: string;
  sections?: Record<string, string>;
}

const sha256 = (v: unknown): string => createHash('sha256').update(JSON.stringify(v)).digest('hex');

/**
 * Configuration changes are audited (PS3.15 A.5.3 Security Alert, Software Configuration): at every
 * start the hash of the effective configuration (secrets excluded, `redactedConfig`) is compared
 * with the last recorded one; a change is recorded with the top-level sections that changed.
 * Returns whether an event was written.
 */
export async function auditConfigurationChange(q: Queryable, config: RadScribeConfig, actor: string): Promise<boolean> {
  const doc = redactedConfig(config);
  const hash = sha256(doc);
  const prev = await q.query<{ detail: ConfigChangeDetail }>(SELECT_LAST_CONFIG_CHANGE, [AuditEventKind.ConfigChange]);
  const last = prev.rows[0]?.detail;
  if (last?.configSha256 === hash) return false;
  const sections: Record<string, string> = {};
  for (const [k, v] of Object.entries(doc)) sections[k] = sha256(v).slice(0, 16);
  const changed = last?.sections
    ? Object.keys(sections).filter((k) => sections[k] !== last.sections?.[k])
    : Object.keys(sections);
  await recordAudit(q, { kind: AuditEventKind.ConfigChange, actor, detail: { configSha256: hash, sections, changed } });
  return true;
}
