import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { buildAuditQuery } from '../src/audit/audit-query.js';
import { migrate } from '../src/db/migrate.js';
import { insertTrailRows, type PlanNode, planNodes, TYPICAL_QUERIES } from './support/audit-trail-load.js';
import { onBenchPostgres } from './support/private-postgres.js';

/**
 * Compliance queries at 10 million audit events (issue 12 "Benchmarks": "p95 of the typical
 * compliance queries at 10 million rows"). The trail and the queries are the query-plan test's
 * (bench/support/audit-trail-load.ts), at RADSCRIBE_BENCH_AUDIT_ROWS rows (default 10 000 000)
 * in a fresh schema on DATABASE_URL, else on a private cluster. Each query is the production SQL
 * (buildAuditQuery, a page of 100), run QUERY_RUNS times after WARMUP runs, interleaved across
 * queries round by round; p50, p95 and max in ms, the rows of its page (checked non-empty where the
 * data has matches), and the index the plan uses. No peer: the goal is "answer fast".
 */

const ROWS = Number(process.env.RADSCRIBE_BENCH_AUDIT_ROWS ?? 10_000_000);
const BATCH = 1_000_000;
const QUERY_RUNS = Number(process.env.RADSCRIBE_BENCH_QUERY_RUNS ?? 40);
const WARMUP = 3;

const pct = (xs: readonly number[], p: number): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.ceil((p / 100) * s.length) - 1)] as number;
};

async function benchOn(name: string, url: string): Promise<void> {
  const schema = `bench_compliance_${randomBytes(4).toString('hex')}`;
  const admin = new pg.Client({ connectionString: url });
  await admin.connect();
  const pool = new pg.Pool({ connectionString: url, max: 1, options: `-c search_path=${schema}` });
  pool.on('error', () => undefined);
  try {
    await admin.query(`CREATE SCHEMA ${schema}`);
    await migrate(pool);
    const c = await pool.connect();
    const t0 = Date.now();
    try {
      await c.query('ALTER TABLE audit_events DISABLE TRIGGER USER');
      for (let from = 1; from <= ROWS; from += BATCH) await insertTrailRows(c, from, Math.min(ROWS, from + BATCH - 1));
      await c.query('ALTER TABLE audit_events ENABLE TRIGGER USER');
      await c.query('ANALYZE audit_events');
    } finally {
      c.release();
    }
    const loadS = (Date.now() - t0) / 1000;
    const { rows: size } = await pool.query<{ n: string; bytes: string }>(
      `SELECT count(*) AS n, pg_total_relation_size('audit_events') AS bytes FROM audit_events`,
    );
    const times = TYPICAL_QUERIES.map(() => [] as number[]);
    const pageRows = TYPICAL_QUERIES.map(() => 0);
    for (let round = 0; round < WARMUP + QUERY_RUNS; round++) {
      for (const [i, [, , query]] of TYPICAL_QUERIES.entries()) {
        const sql = buildAuditQuery(query);
        const s = process.hrtime.bigint();
        const r = await pool.query(sql.text, sql.values);
        const ms = Number(process.hrtime.bigint() - s) / 1e6;
        if (round >= WARMUP) (times[i] as number[]).push(ms);
        pageRows[i] = r.rowCount ?? 0;
      }
    }
    const lines = [
      `${name}: ${Number(size[0]?.n).toLocaleString('en')} events (${(Number(size[0]?.bytes) / 2 ** 30).toFixed(1)} GiB with indexes, loaded in ${loadS.toFixed(0)} s); ${QUERY_RUNS} runs per query after ${WARMUP} warm-up, interleaved`,
      '| query | p50 ms | p95 ms | max ms | rows in page | index used |',
      '|---|---|---|---|---|---|',
    ];
    for (const [i, [label, , query]] of TYPICAL_QUERIES.entries()) {
      const sql = buildAuditQuery(query);
      const { rows } = await pool.query<{ 'QUERY PLAN': { Plan: PlanNode }[] }>(
        `EXPLAIN (FORMAT JSON) ${sql.text}`,
        sql.values,
      );
      const explained = rows[0]?.['QUERY PLAN'][0] as { Plan: PlanNode };
      const plan = planNodes(explained.Plan);
      const seq = plan.some((n) => n['Node Type'] === 'Seq Scan' && n['Relation Name'] === 'audit_events');
      const used = [...new Set(plan.map((n) => n['Index Name']).filter(Boolean))].join(', ');
      const t = times[i] as number[];
      lines.push(
        `| ${label} | ${pct(t, 50).toFixed(1)} | ${pct(t, 95).toFixed(1)} | ${Math.max(...t).toFixed(1)} | ${pageRows[i]} | ${seq ? 'SEQ SCAN' : used} |`,
      );
    }
    process.stdout.write(`${lines.join('\n')}\n`);
  } finally {
    await pool.end().catch(() => undefined);
    await admin.query(`DROP SCHEMA IF EXISTS ${schema} CASCADE`).catch(() => undefined);
    await admin.end();
  }
}

export function run(): Promise<void> {
  return onBenchPostgres(benchOn);
}
