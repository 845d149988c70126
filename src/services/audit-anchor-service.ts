import { readPrivateKey } from '../audit/audit-anchor.js';
import { AuditAnchorer } from '../audit/audit-anchorer.js';
import type { RadScribeConfig } from '../config.js';
import type { Database } from '../db/pool.js';
import { Resource } from './service.js';

/**
 * The gateway's audit anchoring (issue 12 "Tamper evidence"), when `audit.anchor.directory` is
 * set; otherwise undefined (nothing to start). Placed so that it closes after the
 * application-stop event is written and before the database closes: the shutdown anchor covers
 * the stop. A key that cannot be read fails the start, with its path.
 */
export function auditAnchorService(
  config: RadScribeConfig,
  database: Resource<Database>,
): Resource<AuditAnchorer> | undefined {
  const c = config.audit.anchor;
  if (!c.directory) return undefined;
  return new Resource<AuditAnchorer>(
    'audit-anchor',
    async () => {
      const anchorer = new AuditAnchorer({
        pool: database.value.pool,
        directory: c.directory,
        intervalMs: c.intervalSeconds * 1000,
        privateKey: readPrivateKey(c.privateKeyFile),
      });
      await anchorer.start();
      return anchorer;
    },
    (a) => a.stop(),
  );
}
