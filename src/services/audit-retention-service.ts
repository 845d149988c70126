import { readPrivateKey } from '../audit/audit-anchor.js';
import { AuditRetentionSweeper } from '../audit/audit-retention.js';
import type { RadScribeConfig } from '../config.js';
import type { Database } from '../db/pool.js';
import { Resource } from './service.js';

/**
 * The gateway's audit retention (issue 12 "Retention"), when `audit.retention.periodDays` is set;
 * otherwise undefined (nothing to start). Every `intervalSeconds` it archives, verifies and drops
 * the segments older than the period (src/audit/audit-retention.ts). The anchor key signs the
 * archives; one that cannot be read fails the start, with its path. Closing waits for a pass in
 * flight, whose drop then commits or rolls back as a whole.
 */
export function auditRetentionService(
  config: RadScribeConfig,
  database: Resource<Database>,
  actor: string,
): Resource<AuditRetentionSweeper> | undefined {
  const r = config.audit.retention;
  if (r.periodDays === 0) return undefined;
  return new Resource<AuditRetentionSweeper>(
    'audit-retention',
    async () => {
      const sweeper = new AuditRetentionSweeper({
        pool: database.value.pool,
        periodDays: r.periodDays,
        archiveDirectory: r.archiveDirectory,
        segmentRows: r.segmentRows,
        intervalMs: r.intervalSeconds * 1000,
        privateKey: readPrivateKey(config.audit.anchor.privateKeyFile),
        actor,
      });
      sweeper.start();
      return sweeper;
    },
    (s) => s.stop(),
  );
}
