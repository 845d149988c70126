import { accessSync, constants } from 'node:fs';
import { AuditExporter } from '../audit/atna/audit-exporter.js';
import type { RadScribeConfig } from '../config.js';
import type { Database } from '../db/pool.js';
import { ErrorCode, RadScribeError } from '../errors.js';
import { Resource } from './service.js';

/**
 * The gateway's ATNA export (issue 12 "Export to the hospital"), when `audit.export.syslog.host`
 * is set; otherwise undefined. Placed after the database and before application-start, so it is
 * closed after application-stop is written (reverse order) and may still send it. A file that
 * cannot be read fails the start, every such file named at once; a repository that is down does not
 * (the exporter retries, the events wait in the trail).
 */
/** How long close() waits for the last events (application-stop) to go out. */
const DRAIN_ON_CLOSE_MS = 5000;

export function auditExportService(
  config: RadScribeConfig,
  database: Resource<Database>,
): Resource<AuditExporter> | undefined {
  const s = config.audit.export.syslog;
  if (!s.host) return undefined;
  return new Resource<AuditExporter>(
    'audit-export',
    async () => {
      const unreadable = (
        [
          ['caFile', s.caFile],
          ['certFile', s.certFile],
          ['keyFile', s.keyFile],
        ] as const
      ).filter(([, f]) => {
        if (!f) return false;
        try {
          accessSync(f, constants.R_OK);
          return false;
        } catch {
          return true;
        }
      });
      if (unreadable.length > 0)
        throw new RadScribeError(
          ErrorCode.ConfigInvalid,
          unreadable.map(([k, f]) => `audit.export.syslog.${k}: cannot read ${f}`).join('; '),
        );
      const exporter = new AuditExporter({
        pool: database.value.pool,
        syslog: {
          host: s.host,
          port: s.port,
          caFile: s.caFile,
          ...(s.certFile ? { certFile: s.certFile, keyFile: s.keyFile } : {}),
          ...(s.serverName ? { serverName: s.serverName } : {}),
        },
      });
      exporter.start();
      return exporter;
    },
    (e) => e.stop(DRAIN_ON_CLOSE_MS),
  );
}
