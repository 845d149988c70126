import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { verifyAuditChain } from '../src/audit/audit-log.js';
import { loadConfig } from '../src/config.js';
import { Gateway } from '../src/gateway.js';
import { createApiToken } from '../src/http/auth/api-tokens.js';
import type { Role } from '../src/http/auth/roles.js';
import { FIXTURES_DIR } from '../src/runtime-paths.js';
import { postgresBinDir, StopMode, startPrivatePostgres } from './support/private-postgres.js';
import { checkStored, type StowAnswer, spread, storeInstances, uidOfLength, withUids } from './support/stow-load.js';

/**
 * Database outages under STOW-RS load (issue 9). One gateway process on a private PostgreSQL cluster
 * (bench/support/private-postgres.ts; the system server is never touched); N times (default 25,
 * RADSCRIBE_BENCH_OUTAGES) the cluster is stopped, alternately `fast` (sessions ended with 57P01) and
 * `immediate` (a crash), while 8 clients keep sending 2-instance STOW-RS requests, and started again.
 * Reported: what clients were told (statuses), what is stored (acknowledged vs rows, files, audit
 * events; missing and duplicates), what a client retry of every unacknowledged instance finds, and
 * the recovery time from "server accepting connections" to the first acknowledged request.
 */

const TEMPLATE = readFileSync(path.join(FIXTURES_DIR, 'dicom', 'MR_small.dcm'));
const T_SOP = '1.3.6.1.4.1.5962.1.1.4.1.1.20040826185059.5457';
const T_STUDY = '1.3.6.1.4.1.5962.1.2.4.20040826185059.5457';
const CLIENTS = 8;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export async function run(): Promise<void> {
  if (!postgresBinDir()) {
    process.stdout.write('skipped: no PostgreSQL server under /usr/lib/postgresql/*/bin\n');
    return;
  }
  const outages = Number(process.env.RADSCRIBE_BENCH_OUTAGES ?? 25);
  const server = await startPrivatePostgres();
  const dataDir = mkdtempSync(path.join(tmpdir(), 'rs-outage-bench-'));
  const config = loadConfig({
    env: {},
    overrides: {
      dataDir,
      database: { url: server.url, checkoutTimeoutMs: 3_000 },
      http: { host: '127.0.0.1', port: 0 },
      // Ingest only: the pipeline would add inference load unrelated to the database.
      ingest: { stabilityWindowMs: 3_600_000 },
      destinations: [{ name: 'outbox', type: 'folder', path: path.join(dataDir, 'outbox') }],
      defaultDestination: 'outbox',
      log: { level: 'error' },
    } as never,
  });
  const gw = await Gateway.start(config, { actor: 'bench' });
  try {
    const base = `${gw.baseUrl}/dicomweb`;
    // The gateway asks every caller for a token (README "Access").
    const token = async (role: Role) => ({
      authorization: `Bearer ${(await createApiToken(gw.db.pool, { name: `bench ${role}`, role, createdBy: 'bench' })).secret}`,
    });
    const ingest = await token('ingest');
    const sent = new Map<string, Buffer>();
    const answers: Array<StowAnswer & { at: number }> = [];
    let running = true;
    const clients = Array.from({ length: CLIENTS }, async () => {
      const study = uidOfLength(T_STUDY.length);
      while (running) {
        const files = [0, 1].map(() => {
          const sop = uidOfLength(T_SOP.length);
          const bytes = withUids(
            TEMPLATE,
            new Map([
              [T_SOP, sop],
              [T_STUDY, study],
            ]),
          );
          sent.set(sop, bytes);
          return bytes;
        });
        const at = Date.now();
        const a = await storeInstances(base, files, 60_000, ingest);
        answers.push({ ...a, at });
        if (a.status !== 200) await sleep(50);
      }
    });
    const recovery: number[] = [];
    const downtime: number[] = [];
    let unrecovered = 0;
    for (let i = 0; i < outages; i++) {
      await sleep(400);
      const down = Date.now();
      await server.stop(i % 2 === 0 ? StopMode.Fast : StopMode.Immediate);
      await sleep(700);
      await server.start();
      const up = Date.now();
      downtime.push(up - down);
      const deadline = up + 30_000;
      let first: number | undefined;
      while (first === undefined && Date.now() < deadline) {
        const ok = answers.filter((a) => a.at >= up && a.status === 200).map((a) => a.at + a.ms);
        if (ok.length > 0) first = Math.min(...ok);
        else await sleep(20);
      }
      if (first === undefined) unrecovered++;
      else recovery.push(first - up);
    }
    await sleep(500);
    running = false;
    await Promise.all(clients);

    const pool = gw.db.pool;
    const acked = answers.flatMap((a) => a.referenced);
    const ackedSet = new Set(acked);
    const before = await checkStored(pool, acked);
    const unacked = [...sent.keys()].filter((u) => !ackedSet.has(u));
    const { rows: committedUnacked } = await pool.query<{ n: string }>(
      'SELECT count(*) AS n FROM instances WHERE sop_instance_uid = ANY($1::text[])',
      [unacked],
    );
    // The client's retry of everything it was not told was stored.
    let retryFailed = 0;
    for (const uid of unacked) {
      const a = await storeInstances(base, [sent.get(uid) as Buffer], 120_000, ingest);
      if (a.status !== 200 || a.referenced[0] !== uid) retryFailed++;
    }
    const after = await checkStored(pool, sent.keys());
    const chain = await verifyAuditChain(pool);
    const refusals = await pool.query<{ events: number; refused: number | null }>(
      `SELECT count(*)::int AS events, sum((detail->>'refused')::int)::int AS refused FROM audit_events
       WHERE kind = 'instance-refused' AND outcome = 8 AND detail->>'errorCode' = 'database-unavailable'`,
    );

    const byStatus = new Map<string, number>();
    for (const a of answers) {
      const k = a.networkError ? 'network error' : String(a.status);
      byStatus.set(k, (byStatus.get(k) ?? 0) + 1);
    }
    const r = spread(recovery);
    const d = spread(downtime);
    const unavailable = spread(answers.filter((a) => a.status === 503).map((a) => a.ms));
    const lines = [
      `outages: ${outages} (fast and immediate alternately), ${CLIENTS} clients × 2-instance STOW-RS requests`,
      `requests: ${answers.length}; statuses: ${[...byStatus].map(([k, n]) => `${k} × ${n}`).join(', ')}`,
      `503 answer time ms: median ${unavailable.median} (${unavailable.min}–${unavailable.max})`,
      `server down (stop → accepting) ms: median ${d.median} (${d.min}–${d.max})`,
      `recovery (accepting → first 200) ms: median ${r.median} (${r.min}–${r.max}); not recovered in 30 s: ${unrecovered}`,
      '',
      '| | instances |',
      '|---|---|',
      `| sent | ${sent.size} |`,
      `| acknowledged (200/202 Referenced SOP) | ${before.acknowledged} |`,
      `| acknowledged without row | ${before.missingRows.length} |`,
      `| acknowledged without file | ${before.missingFiles.length} |`,
      `| acknowledged without audit event | ${before.missingAudit.length} |`,
      `| acknowledged with duplicate audit events | ${before.duplicateAudit.length} |`,
      `| rows before retry / files | ${before.rows} / ${before.files} |`,
      `| not acknowledged but committed (outcome unknown at the outage) | ${committedUnacked[0]?.n ?? 0} |`,
      `| not acknowledged, retried by the client, retry not 200 | ${retryFailed} of ${unacked.length} |`,
      `| after retry: rows / files / missing rows / missing files / missing audit / duplicate audit | ${after.rows} / ${after.files} / ${after.missingRows.length} / ${after.missingFiles.length} / ${after.missingAudit.length} / ${after.duplicateAudit.length} |`,
      `| refusals audited after recovery (outcome 8 events / receipts counted) | ${refusals.rows[0]?.events ?? 0} / ${refusals.rows[0]?.refused ?? 0} |`,
      `| audit chain | ${chain.ok ? 'verifies' : `broken at ${chain.firstBrokenId}`} (${chain.checked} events) |`,
    ];
    process.stdout.write(`${lines.join('\n')}\n`);
  } finally {
    await gw.stop('bench');
    await server.destroy();
    rmSync(dataDir, { recursive: true, force: true });
  }
}
