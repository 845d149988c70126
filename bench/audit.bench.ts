import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { AUDIT_EVENTS, AuditEventKind } from '../src/audit/audit-codes.js';
import { recordAudit } from '../src/audit/audit-log.js';
import { verifyAuditChain } from '../src/audit/audit-verify.js';
import { migrate } from '../src/db/migrate.js';
import { onBenchPostgres } from './support/private-postgres.js';

/**
 * Audit trail throughput (issue 12 "Benchmarks"): appends through the hash chains (32 lanes since
 * migration 0016, each append holding one lane's lock to its commit) under 8 and 32 concurrent writers, against plain inserts into
 * the same table (same migrations, same indexes) with the chain trigger disabled; the ratio is the
 * cost of the chain (goal ≥ 0.5×). Then `audit verify` (application-side canonical form) in rows
 * per second over the chained rows. On DATABASE_URL when set (a fresh schema), else on a private
 * cluster (bench/support/private-postgres.ts). ROUNDS rounds of PHASE_MS per side, alternating; autocommit appends.
 * RADSCRIBE_BENCH_PG_OPTIONS adds session settings to both sides (e.g. `-c synchronous_commit=off`,
 * to see how much of the gap is the WAL flush held under the chain lock).
 */

const PHASE_MS = Number(process.env.RADSCRIBE_BENCH_PHASE_MS ?? 2000);
const ROUNDS = Number(process.env.RADSCRIBE_BENCH_ROUNDS ?? 5);
const WRITERS = [8, 32] as const;

const median = (xs: readonly number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? (s[m] as number) : ((s[m - 1] as number) + (s[m] as number)) / 2;
};
const spread = (xs: readonly number[], digits: number): string =>
  `${median(xs).toFixed(digits)} (${Math.min(...xs).toFixed(digits)}–${Math.max(...xs).toFixed(digits)})`;

const PLAIN_INSERT = `
INSERT INTO audit_events (id, occurred_at, kind, event_id, event_type_code, action_code, outcome, actor, source,
                          study_instance_uid, sop_instance_uids, detail, prev_hash, row_hash)
VALUES (nextval('audit_events_id_seq'), clock_timestamp(), $1, $2, NULL, $3, 0, $4, $5, $6, $7::text[], $8::jsonb,
        repeat('0', 64), repeat('0', 64))`;

async function schemaPool(url: string, schema: string, max: number): Promise<pg.Pool> {
  const pool = new pg.Pool({
    connectionString: url,
    max,
    options: `-c search_path=${schema} ${process.env.RADSCRIBE_BENCH_PG_OPTIONS ?? ''}`,
  });
  pool.on('error', () => undefined);
  return pool;
}

/** Runs `writers` loops of `append` for PHASE_MS; returns appends per second. */
async function phase(writers: number, append: (writer: number, i: number) => Promise<unknown>): Promise<number> {
  const deadline = Date.now() + PHASE_MS;
  const t0 = process.hrtime.bigint();
  const counts = await Promise.all(
    Array.from({ length: writers }, async (_, w) => {
      let n = 0;
      while (Date.now() < deadline) await append(w, n++);
      return n;
    }),
  );
  const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
  return counts.reduce((a, b) => a + b, 0) / seconds;
}

const event = (w: number, i: number) => ({
  kind: AuditEventKind.InstanceReceived,
  actor: `AE_${w}`,
  source: `10.0.0.${w}`,
  studyInstanceUid: `1.2.826.0.1.${w}`,
  sopInstanceUids: [`1.2.826.0.1.${w}.${i}`],
  detail: { via: 'stow-rs', sizeBytes: 1000 + i },
});

async function benchOn(name: string, url: string): Promise<void> {
  const tag = randomBytes(4).toString('hex');
  const chained = `bench_audit_chain_${tag}`;
  const plain = `bench_audit_plain_${tag}`;
  const admin = new pg.Client({ connectionString: url });
  await admin.connect();
  const pools: pg.Pool[] = [];
  try {
    for (const s of [chained, plain]) await admin.query(`CREATE SCHEMA ${s}`);
    for (const s of [chained, plain]) {
      const p = await schemaPool(url, s, 2);
      await migrate(p);
      await p.end();
    }
    await admin.query(`ALTER TABLE ${plain}.audit_events DISABLE TRIGGER audit_events_chain_trg`);
    const def = AUDIT_EVENTS[AuditEventKind.InstanceReceived];
    const lines: string[] = [
      `${name}: ${ROUNDS} rounds of ${PHASE_MS} ms per side, sides alternating (A B, B A, …), autocommit appends; median (min–max)`,
    ];
    for (const writers of WRITERS) {
      const cp = await schemaPool(url, chained, writers);
      const pp = await schemaPool(url, plain, writers);
      pools.push(cp, pp);
      const runChain = () => phase(writers, (w, i) => recordAudit(cp, event(w, i)));
      const runPlain = () =>
        phase(writers, (w, i) => {
          const e = event(w, i);
          return pp.query(PLAIN_INSERT, [
            e.kind,
            def.eventId.code,
            def.action,
            e.actor,
            e.source,
            e.studyInstanceUid,
            e.sopInstanceUids,
            JSON.stringify(e.detail),
          ]);
        });
      const chain: number[] = [];
      const bare: number[] = [];
      for (let round = 0; round < ROUNDS; round++) {
        if (round % 2 === 0) {
          chain.push(await runChain());
          bare.push(await runPlain());
        } else {
          bare.push(await runPlain());
          chain.push(await runChain());
        }
      }
      // Connections are shared with other users of the server: give them back between phases.
      await cp.end();
      await pp.end();
      // The ratio of each round's pair: both sides met the same load on the machine.
      const ratios = chain.map((c, i) => c / (bare[i] as number));
      lines.push(
        `  ${String(writers).padStart(2)} writers: chained ${spread(chain, 0)} rows/s, plain ${spread(bare, 0)} rows/s, ratio ${spread(ratios, 2)}× (goal ≥ 0.5×)`,
      );
    }
    // Outputs verified: the chained side's rows form intact chains (checked below with the verifier).
    const vp = await schemaPool(url, chained, 1);
    pools.push(vp);
    const t0 = process.hrtime.bigint();
    const report = await verifyAuditChain(vp);
    const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
    lines.push(
      `  audit verify: ${report.checked} rows in ${seconds.toFixed(2)} s = ${(report.checked / seconds).toFixed(0)} rows/s (${report.ok ? 'intact' : 'BROKEN'})`,
    );
    process.stdout.write(`${lines.join('\n')}\n`);
  } finally {
    for (const p of pools) await p.end().catch(() => undefined);
    for (const s of [chained, plain]) await admin.query(`DROP SCHEMA IF EXISTS ${s} CASCADE`).catch(() => undefined);
    await admin.end();
  }
}

export function run(): Promise<void> {
  return onBenchPostgres(benchOn);
}
