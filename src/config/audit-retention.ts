import {
  DEFAULT_AUDIT_RETENTION_INTERVAL_SECONDS,
  DEFAULT_AUDIT_RETENTION_SEGMENT_ROWS,
} from '../audit/audit-retention.js';

/**
 * `audit.retention` (issue 12 "Retention"; src/audit/audit-retention.ts): events older than
 * `periodDays` are archived (signed with the anchor key), verified and dropped, a segment of
 * `segmentRows` ids at a time, every `intervalSeconds` by the gateway or on demand with
 * `radscribe audit retention run`. `periodDays: 0` (the default) keeps every event.
 */
export interface AuditRetentionConfig {
  periodDays: number;
  /** Where archives go (keep it where the database's administrators cannot write, like the anchors). */
  archiveDirectory: string;
  intervalSeconds: number;
  segmentRows: number;
}

export const AUDIT_RETENTION_DEFAULTS: AuditRetentionConfig = {
  periodDays: 0,
  archiveDirectory: '',
  intervalSeconds: DEFAULT_AUDIT_RETENTION_INTERVAL_SECONDS,
  segmentRows: DEFAULT_AUDIT_RETENTION_SEGMENT_ROWS,
};

/** What this module needs of config.ts's validator (it collects every problem with its path). */
interface ConfigValidator {
  has(o: object, k: string): boolean;
  obj(o: object, k: string, parent?: string): object;
  str(o: object, k: string, parent?: string, allowEmpty?: boolean): string;
  int(o: object, k: string, parent: string | undefined, min: number, max: number, dflt?: number): number;
  problem(p: string, msg: string): void;
}

const P = 'audit.retention';

/**
 * Validates `audit.retention` (absent: off). With a period, the archive directory and the anchor
 * private key (which signs the archives) are required.
 */
export function validateAuditRetention(
  v: ConfigValidator,
  audit: object,
  anchor: { privateKeyFile: string },
): AuditRetentionConfig {
  const o = v.has(audit, 'retention') ? v.obj(audit, 'retention', 'audit') : {};
  const d = AUDIT_RETENTION_DEFAULTS;
  const cfg: AuditRetentionConfig = {
    periodDays: v.int(o, 'periodDays', P, 0, 36_500, d.periodDays),
    archiveDirectory: v.has(o, 'archiveDirectory') ? v.str(o, 'archiveDirectory', P, true) : d.archiveDirectory,
    intervalSeconds: v.int(o, 'intervalSeconds', P, 60, 30 * 86_400, d.intervalSeconds),
    segmentRows: v.int(o, 'segmentRows', P, 1, 100_000_000, d.segmentRows),
  };
  if (cfg.periodDays > 0) {
    if (cfg.archiveDirectory === '')
      v.problem(`${P}.archiveDirectory`, 'is required when audit.retention.periodDays is set');
    if (anchor.privateKeyFile === '')
      v.problem(
        'audit.anchor.privateKeyFile',
        'is required when audit.retention.periodDays is set (it signs the archives)',
      );
  }
  return cfg;
}
