import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { type AuditChainRow, canonicalAuditEvent, chainHash, GENESIS_HASH } from '../src/audit/audit-canonical.js';
import { runAuditRetention } from '../src/audit/audit-retention.js';
import { verifyAuditChain } from '../src/audit/audit-verify.js';
import { migrate } from '../src/db/migrate.js';
import { onBenchPostgres } from './support/private-postgres.js';

/**
 * Audit retention (issue 12 "Retention"): the time to export one segment of SEGMENT_ROWS events to
 * its signed archive, verify the archive from its files, and drop the segment through
 * audit_retention_drop() (migration 0021), then `audit verify` of what remains. The trail is
 * SEGMENT_ROWS + TAIL_ROWS chained events in 32 lanes, written directly with their hashes (computed
 * here as the trigger computes them) so that loading is not what is measured. On DATABASE_URL when
 * set (a fresh schema), else on a private cluster.
 */

const SEGMENT_ROWS = Number(process.env.RADSCRIBE_BENCH_SEGMENT_ROWS ?? 100_000);
const TAIL_ROWS = Number(process.env.RADSCRIBE_BENCH_TAIL_ROWS ?? 10_000);
const BATCH = 10_000;
/** 2020-01-01T00:00:00Z, one event every 10 s: all far older than the one-day period. */
const START_EPOCH = 1_577_836_800;

function row(g: number, prevHash: string): AuditChainRow {
  const base = {
    id: String(g),
    occurredEpoch: String(START_EPOCH + g * 10),
    kind: 'instance-received',
    eventId: '110104',
    eventTypeCode: null,
    actionCode: 'C',
    outcome: 0,
    actor: `AE_${g % 500}`,
    source: `10.0.${g % 250}.${g % 7}`,
    destination: null,
    patientId: `PAT-${g % 20000}`,
    studyInstanceUid: `1.2.826.0.1.${g % 40000}`,
    sopInstanceUids: null,
    detailText: '{}',
    chainLane: g % 32,
    prevHash,
    rowHash: '',
  };
  return { ...base, rowHash: chainHash(prevHash, canonicalAuditEvent(base)) };
}

async function load(c: pg.PoolClient, total: number): Promise<void> {
  const heads = new Map<number, string>();
  await c.query('ALTER TABLE audit_events DISABLE TRIGGER USER');
  for (let from = 1; from <= total; from += BATCH) {
    const to = Math.min(total, from + BATCH - 1);
    const prev: string[] = [];
    const hash: string[] = [];
    for (let g = from; g <= to; g++) {
      const r = row(g, heads.get(g % 32) ?? GENESIS_HASH);
      heads.set(g % 32, r.rowHash);
      prev.push(r.prevHash);
      hash.push(r.rowHash);
    }
    await c.query(
      `INSERT INTO audit_events (id, occurred_at, kind, event_id, action_code, outcome, actor, source, patient_id,
                                 study_instance_uid, detail, chain_lane, prev_hash, row_hash)
       SELECT g, to_timestamp($3::bigint + g * 10), 'instance-received', '110104', 'C', 0,
              'AE_' || (g % 500), '10.0.' || (g % 250) || '.' || (g % 7), 'PAT-' || (g % 20000),
              '1.2.826.0.1.' || (g % 40000), '{}', g % 32, ($4::text[])[g - $1 + 1], ($5::text[])[g - $1 + 1]
       FROM generate_series($1::bigint, $2::bigint) g`,
      [from, to, START_EPOCH, prev, hash],
    );
  }
  await c.query('ALTER TABLE audit_events ENABLE TRIGGER USER');
  await c.query(`SELECT setval('audit_events_id_seq', $1)`, [total]);
  await c.query('ANALYZE audit_events');
}

async function benchOn(name: string, url: string): Promise<void> {
  const schema = `bench_retention_${randomBytes(4).toString('hex')}`;
  const admin = new pg.Client({ connectionString: url });
  await admin.connect();
  await admin.query(`CREATE SCHEMA ${schema}`);
  const pool = new pg.Pool({ connectionString: url, max: 2, options: `-c search_path=${schema}` });
  pool.on('error', () => undefined);
  const dir = mkdtempSync(path.join(tmpdir(), 'radscribe-bench-retention-'));
  try {
    await migrate(pool);
    const total = SEGMENT_ROWS + TAIL_ROWS;
    const c = await pool.connect();
    try {
      const t0 = performance.now();
      await load(c, total);
      process.stdout.write(
        `${name}: ${total} chained events loaded in ${((performance.now() - t0) / 1000).toFixed(1)} s\n`,
      );
    } finally {
      c.release();
    }
    const v0 = performance.now();
    const before = await verifyAuditChain(pool);
    const verifyS = (performance.now() - v0) / 1000;
    if (!before.ok) throw new Error(`the loaded trail does not verify: ${before.problems[0]?.message}`);
    const { privateKey } = generateKeyPairSync('ed25519');
    const r0 = performance.now();
    const report = await runAuditRetention({
      pool,
      periodDays: 1,
      archiveDirectory: dir,
      segmentRows: SEGMENT_ROWS,
      privateKey,
      maxSegments: 1,
    });
    const totalMs = performance.now() - r0;
    const seg = report.segments[0];
    if (!seg?.ms || !seg.manifestFile) throw new Error(`nothing dropped: ${report.stoppedBecause}`);
    const bytes = statSync(seg.manifestFile.replace(/\.manifest$/, '.ndjson')).size;
    const a0 = performance.now();
    const after = await verifyAuditChain(pool);
    const afterS = (performance.now() - a0) / 1000;
    if (!after.ok) throw new Error(`what remains does not verify: ${after.problems[0]?.message}`);
    process.stdout.write(
      [
        `segment (${seg.fromId}, ${seg.toId}]: ${seg.rows} events in ${seg.lanes} lanes, archive ${(bytes / 1e6).toFixed(1)} MB`,
        `  export ${seg.ms.export.toFixed(0)} ms, verify archive ${seg.ms.verify.toFixed(0)} ms, drop ${seg.ms.drop.toFixed(0)} ms; whole run ${totalMs.toFixed(0)} ms`,
        `  (${((seg.rows / totalMs) * 1000).toFixed(0)} events/s archived, verified and dropped)`,
        `audit verify before: ${before.checked} events in ${verifyS.toFixed(1)} s (${(before.checked / verifyS).toFixed(0)} rows/s); after: ${after.checked} events in ${afterS.toFixed(1)} s, ok, ${after.checkpoints} checkpoint`,
        '',
      ].join('\n'),
    );
  } finally {
    await pool.end();
    await admin.query(`DROP SCHEMA IF EXISTS ${schema} CASCADE`).catch(() => undefined);
    await admin.end();
    rmSync(dir, { recursive: true, force: true });
  }
}

export async function run(): Promise<void> {
  return onBenchPostgres(benchOn);
}
