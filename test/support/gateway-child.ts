import { createInterface } from 'node:readline';
import { verifyAuditChain } from '../../src/audit/audit-log.js';
import { startTestGateway } from './gateway.js';

/**
 * A test gateway in a process of its own (run with test/support/swc-register.js), so that a test can
 * measure the gateway's memory apart from jest's. Configuration overrides come as JSON in
 * RADSCRIBE_TEST_OVERRIDES; the database is the server in DATABASE_URL when set, else PGlite.
 * Protocol on stdout/stdin, one line each:
 *   → `READY <baseUrl> <json of one API token per role>` once listening
 *   ← `ROW <sopInstanceUid>`  → `ROW <json of the instances row | null>`
 *   ← `VERIFY`                 → `VERIFY <json of verifyAuditChain's report>`
 *   ← `QUERY <json string: SQL>` → `QUERY <json of the rows>` (test assertions on audit_events etc.)
 *   ← `AUDIT`                  → `AUDIT <json: audit rows counted by kind, outcome,
 *                                 errorCode, failureReason, violation and reason>`
 *   ← `STOP`                   → the gateway stops and the process exits 0 (also on SIGTERM)
 */
async function main(): Promise<void> {
  const overrides = JSON.parse(process.env.RADSCRIBE_TEST_OVERRIDES ?? '{}') as Record<string, unknown>;
  const t = await startTestGateway(process.env.DATABASE_URL ? 'postgresql' : 'pglite', overrides);
  let stopping: Promise<void> | undefined;
  const stop = (): Promise<void> => {
    stopping ??= t.close().then(() => process.exit(0));
    return stopping;
  };
  process.once('SIGTERM', () => void stop());
  const lines = createInterface({ input: process.stdin });
  lines.on('line', (line) => {
    const [cmd, arg] = line.trim().split(/\s+/, 2);
    if (cmd === 'VERIFY') {
      void verifyAuditChain(t.gw.db.pool).then((r) => process.stdout.write(`VERIFY ${JSON.stringify(r)}\n`));
    }
    if (cmd === 'QUERY') {
      const sql = JSON.parse(line.trim().slice('QUERY '.length)) as string;
      void t.gw.db.pool.query(sql).then(
        (r) => process.stdout.write(`QUERY ${JSON.stringify(r.rows)}\n`),
        (err: unknown) => process.stdout.write(`QUERY ${JSON.stringify({ error: String(err) })}\n`),
      );
    }
    if (cmd === 'STOP') void stop();
    if (cmd === 'AUDIT') {
      void t.gw.db.pool
        .query(
          `SELECT kind, outcome, detail->>'errorCode' AS "errorCode", (detail->>'failureReason')::int AS "failureReason",
                  detail->>'violation' AS violation, detail->>'reason' AS reason, count(*)::int AS n
           FROM audit_events
           GROUP BY 1, 2, 3, 4, 5, 6 ORDER BY 1, 2, 3, 4, 5, 6`,
        )
        .then((r) => process.stdout.write(`AUDIT ${JSON.stringify(r.rows)}\n`));
    }
    if (cmd === 'ROW') {
      void t.gw.db.pool
        .query('SELECT * FROM instances WHERE sop_instance_uid = $1', [arg])
        .then((r) => process.stdout.write(`ROW ${JSON.stringify(r.rows[0] ?? null)}\n`));
    }
  });
  process.stdout.write(`READY ${t.gw.baseUrl} ${JSON.stringify(t.tokens)}\n`);
}

main().catch((err: unknown) => {
  process.stderr.write(`gateway-child: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
  process.exit(1);
});
