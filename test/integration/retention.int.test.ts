import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { copyFileSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { verifyAuditChain } from '../../src/audit/audit-log.js';
import { InstanceRepository } from '../../src/ingest/instance-repository.js';
import { InstanceStore } from '../../src/ingest/instance-store.js';
import { KeepReason, type RetentionRule, RetentionSweeper, runRetention } from '../../src/ingest/retention.js';
import {
  getStudy,
  studyClaimed,
  studyExported,
  studyJobFailed,
  studyQueued,
} from '../../src/ingest/study-lifecycle.js';
import type { ReceiptContext, ReceivedFile } from '../../src/ingest/types.js';
import { DicomwebClient } from '../../src/pacs/dicomweb-client.js';
import { FIXTURES_DIR } from '../../src/runtime-paths.js';
import { backendName, type TestDatabase, testDatabase } from '../support/db.js';
import { backends, startTestGateway, type TestGateway, waitFor } from '../support/gateway.js';

/**
 * [REQ-RET-01] issue 9: retention removes received instances only after export (or failure, where a
 * rule says so), per source and age, with a dry run; each removal is one 'study-deleted' audit event
 * (DCM 110105, action D) with the UIDs and counts, and the audit trail itself stays.
 * Instances are real Part 10 files: CR_16x16_6154.dcm (pydicom test data) with the study, series
 * and SOP Instance UIDs rewritten by DCMTK dcmodify.
 */
jest.setTimeout(60_000);

const CR = path.join(FIXTURES_DIR, 'dicom', 'CR_16x16_6154.dcm');
const ROOT = '1.2.826.0.1.3680043.10.1403.9'; // a test-only UID root
const DAY = 86_400_000;

let db: TestDatabase;
let work: string;
let storageDir: string;
let store: InstanceStore;
let n = 0;

beforeAll(async () => {
  db = await testDatabase();
  work = mkdtempSync(path.join(tmpdir(), 'radscribe-retention-'));
  storageDir = path.join(work, 'instances');
  store = new InstanceStore({ pool: db.pool, storageDir });
});
afterAll(async () => {
  await db?.close();
  rmSync(work, { recursive: true, force: true });
});

/** A real instance of study `study` (series `study.1`), SOP `study.1.<k>`, received as a front end would. */
function instance(study: string, k: number): ReceivedFile {
  const p = path.join(work, `in-${++n}.dcm`);
  copyFileSync(CR, p);
  execFileSync('dcmodify', [
    '-nb',
    '-m',
    `(0020,000D)=${study}`,
    '-m',
    `(0020,000E)=${study}.1`,
    '-m',
    `(0008,0018)=${study}.1.${k}`,
    p,
  ]);
  const bytes = readFileSync(p);
  return { path: p, sizeBytes: bytes.byteLength, sha256: createHash('sha256').update(bytes).digest('hex') };
}

async function receive(study: string, count: number, ctx: ReceiptContext): Promise<string[]> {
  const paths: string[] = [];
  for (let k = 1; k <= count; k++) {
    const out = await store.accept(instance(study, k), ctx);
    if (out.status !== 'stored') throw new Error(`not stored: ${JSON.stringify(out)}`);
    paths.push(out.storedPath);
  }
  return paths;
}

/** Drive the study through the lifecycle owner's own transitions, then age it by `days`. */
async function complete(study: string, end: 'exported' | 'failed', days: number): Promise<void> {
  await studyQueued(db.pool, study);
  await studyClaimed(db.pool, study);
  if (end === 'exported') expect(await studyExported(db.pool, study)).toMatchObject({ state: 'exported' });
  else expect(await studyJobFailed(db.pool, study, false)).toMatchObject({ state: 'failed' });
  // Only the state column is guarded by the trigger; the test moves the clock of the state back.
  await db.pool.query(
    `UPDATE studies SET updated_at = now() - $2::double precision * interval '1 millisecond' WHERE study_instance_uid = $1`,
    [study, days * DAY],
  );
}

async function auditCount(kind?: string): Promise<number> {
  const { rows } = await db.pool.query<{ n: number }>(
    `SELECT count(*)::int AS n FROM audit_events ${kind ? 'WHERE kind = $1' : ''}`,
    kind ? [kind] : [],
  );
  return rows[0]?.n ?? 0;
}

const RULES: RetentionRule[] = [
  { name: 'xray', via: 'c-store', callingAeTitles: ['XRAY_ROOM_1'], exportedAfterDays: 7 },
  { name: 'pacs-copies', via: 'wado-rs', remoteNodes: ['main-pacs'], exportedAfterDays: 2, failedAfterDays: 30 },
  { name: 'stow', via: 'stow-rs', exportedAfterDays: 14 },
];

const S = {
  xrayOld: `${ROOT}.1`, // c-store XRAY_ROOM_1, exported 8 days ago → removed
  xrayYoung: `${ROOT}.2`, // same source, exported 3 days ago → kept (not old enough)
  ctRoom: `${ROOT}.3`, // c-store CT_ROOM, exported 100 days ago → kept (no rule)
  pacsFailed: `${ROOT}.4`, // wado-rs main-pacs, failed 31 days ago → removed (failedAfterDays)
  stowFailed: `${ROOT}.5`, // stow-rs, failed 100 days ago → kept (rule keeps failed)
  mixed: `${ROOT}.6`, // c-store XRAY_ROOM_1 + stow-rs, exported 100 days ago → kept (no single rule)
  receiving: `${ROOT}.7`, // stow-rs, still receiving → never looked at
  stowOld: `${ROOT}.8`, // stow-rs, exported 15 days ago → removed
};
const files: Record<string, string[]> = {};

describe(`retention (${backendName()})`, () => {
  beforeAll(async () => {
    files.xrayOld = await receive(S.xrayOld, 3, { via: 'c-store', actor: 'XRAY_ROOM_1', remoteAddress: '10.0.0.5' });
    files.xrayYoung = await receive(S.xrayYoung, 1, { via: 'c-store', actor: 'XRAY_ROOM_1' });
    files.ctRoom = await receive(S.ctRoom, 1, { via: 'c-store', actor: 'CT_ROOM' });
    files.pacsFailed = await receive(S.pacsFailed, 2, { via: 'wado-rs', actor: 'main-pacs' });
    files.stowFailed = await receive(S.stowFailed, 1, { via: 'stow-rs' });
    files.mixed = [
      ...(await receive(S.mixed, 1, { via: 'c-store', actor: 'XRAY_ROOM_1' })),
      ...(await store
        .accept(instance(S.mixed, 2), { via: 'stow-rs', actor: 'alice' })
        .then((o) => (o.status === 'stored' ? [o.storedPath] : []))),
    ];
    files.receiving = await receive(S.receiving, 1, { via: 'stow-rs' });
    files.stowOld = await receive(S.stowOld, 2, { via: 'stow-rs', actor: 'alice' });
    await complete(S.xrayOld, 'exported', 8);
    await complete(S.xrayYoung, 'exported', 3);
    await complete(S.ctRoom, 'exported', 100);
    await complete(S.pacsFailed, 'failed', 31);
    await complete(S.stowFailed, 'failed', 100);
    await complete(S.mixed, 'exported', 100);
    await complete(S.stowOld, 'exported', 15);
    expect(files.mixed).toHaveLength(2);
  });

  it('the dry run reports what would go and changes nothing', async () => {
    const audits = await auditCount();
    const r = await runRetention({ pool: db.pool, rules: RULES, storageDir, dryRun: true });
    expect(r.dryRun).toBe(true);
    const size = statSync(CR).size;
    expect(r.removed.map((s) => [s.studyInstanceUid, s.rule, s.state, s.instances]).sort()).toEqual(
      [
        [S.xrayOld, 'xray', 'exported', 3],
        [S.pacsFailed, 'pacs-copies', 'failed', 2],
        [S.stowOld, 'stow', 'exported', 2],
      ].sort(),
    );
    // dcmodify made every copy the same size (same UID lengths).
    for (const s of r.removed)
      expect(s.bytes).toBe(s.instances * statSync(files[keyOf(s.studyInstanceUid)]?.[0] as string).size);
    expect(size).toBeGreaterThan(0);
    expect(Object.fromEntries(r.kept.map((k) => [k.studyInstanceUid, k.reason]))).toEqual({
      [S.xrayYoung]: KeepReason.NotOldEnough,
      [S.ctRoom]: KeepReason.NoMatchingRule,
      [S.stowFailed]: KeepReason.FailedKept,
      [S.mixed]: KeepReason.NoMatchingRule,
    });
    for (const p of Object.values(files).flat()) expect(existsSync(p)).toBe(true);
    expect(await getStudy(db.pool, S.xrayOld)).toMatchObject({ state: 'exported', instanceCount: 3 });
    expect(await auditCount()).toBe(audits);
  });

  it('a run removes exactly those: files and empty folders gone, rows marked, study expunged, one audit event each', async () => {
    const before = await auditCount();
    const r = await runRetention({ pool: db.pool, rules: RULES, storageDir, actor: 'cli:test' });
    expect(r.removed.map((s) => s.studyInstanceUid).sort()).toEqual([S.xrayOld, S.pacsFailed, S.stowOld].sort());
    for (const key of ['xrayOld', 'pacsFailed', 'stowOld']) {
      for (const p of files[key] ?? []) expect(existsSync(p)).toBe(false);
      const studyDir = path.join(storageDir, S[key as keyof typeof S]);
      expect(existsSync(studyDir)).toBe(false);
    }
    for (const key of ['xrayYoung', 'ctRoom', 'stowFailed', 'mixed', 'receiving'])
      for (const p of files[key] ?? []) expect(existsSync(p)).toBe(true);

    expect(await getStudy(db.pool, S.xrayOld)).toMatchObject({ state: 'expunged', instanceCount: 0 });
    expect(await getStudy(db.pool, S.pacsFailed)).toMatchObject({ state: 'expunged' });
    expect(await getStudy(db.pool, S.ctRoom)).toMatchObject({ state: 'exported' });
    expect(await getStudy(db.pool, S.receiving)).toMatchObject({ state: 'receiving' });
    // Rows stay, marked; the pipeline no longer sees them.
    const { rows } = await db.pool.query<{ n: number; deleted: number }>(
      `SELECT count(*)::int AS n, count(deleted_at)::int AS deleted FROM instances WHERE study_instance_uid = $1`,
      [S.xrayOld],
    );
    expect(rows[0]).toEqual({ n: 3, deleted: 3 });
    expect(await new InstanceRepository(db.pool).listForStudy(S.xrayOld)).toEqual([]);

    const { rows: ev } = await db.pool.query<{
      event_id: string;
      action_code: string;
      outcome: number;
      actor: string;
      sop_instance_uids: string[];
      detail: Record<string, unknown>;
    }>(
      `SELECT event_id, action_code, outcome, actor, sop_instance_uids, detail FROM audit_events
       WHERE kind = 'study-deleted' AND study_instance_uid = $1`,
      [S.xrayOld],
    );
    expect(ev).toEqual([
      {
        event_id: '110105',
        action_code: 'D',
        outcome: 0,
        actor: 'cli:test',
        sop_instance_uids: [1, 2, 3].map((k) => `${S.xrayOld}.1.${k}`),
        detail: expect.objectContaining({
          rule: 'xray',
          fromState: 'exported',
          instances: 3,
          series: 1,
          bytes: 3 * statSync(files.xrayYoung?.[0] as string).size,
          sources: ['c-store:XRAY_ROOM_1'],
        }),
      },
    ]);
    expect(await auditCount()).toBe(before + 3);
    // The receipts of the removed instances are still in the trail, and the chain verifies.
    const { rows: receipts } = await db.pool.query<{ n: number }>(
      `SELECT count(*)::int AS n FROM audit_events WHERE kind = 'instance-received' AND study_instance_uid = $1`,
      [S.xrayOld],
    );
    expect(receipts[0]?.n).toBe(3);
    expect((await verifyAuditChain(db.pool)).ok).toBe(true);
  });

  it('a second run finds nothing new (idempotent)', async () => {
    const before = await auditCount();
    const r = await runRetention({ pool: db.pool, rules: RULES, storageDir });
    expect(r.removed).toEqual([]);
    expect(await auditCount()).toBe(before);
  });

  it('the audit trail cannot be deleted (retention never tries; the table refuses it)', async () => {
    await expect(db.pool.query(`DELETE FROM audit_events WHERE kind = 'study-deleted'`)).rejects.toThrow();
    expect(await auditCount('study-deleted')).toBe(3);
  });

  it('an instance sent again after removal is stored anew (not a duplicate) and re-opens the study', async () => {
    const again = instance(S.xrayOld, 2);
    const out = await store.accept(again, { via: 'c-store', actor: 'XRAY_ROOM_1' });
    expect(out.status).toBe('stored');
    if (out.status !== 'stored') return;
    expect(readFileSync(out.storedPath).byteLength).toBe(again.sizeBytes);
    expect(await getStudy(db.pool, S.xrayOld)).toMatchObject({ state: 'receiving', instanceCount: 1 });
    const live = await new InstanceRepository(db.pool).listForStudy(S.xrayOld);
    expect(live.map((i) => i.sopInstanceUid)).toEqual([`${S.xrayOld}.1.2`]);
    // A second identical send is now a duplicate of the live copy.
    expect((await store.accept(instance(S.xrayOld, 2), { via: 'c-store', actor: 'XRAY_ROOM_1' })).status).toBe(
      'duplicate',
    );
  });

  it('files outside the instance store are never deleted: the study is kept', async () => {
    const other = new InstanceStore({ pool: db.pool, storageDir: path.join(work, 'elsewhere') });
    const study = `${ROOT}.9`;
    const out = await other.accept(instance(study, 1), { via: 'stow-rs' });
    expect(out.status).toBe('stored');
    await complete(study, 'exported', 20);
    const r = await runRetention({ pool: db.pool, rules: RULES, storageDir });
    expect(r.kept).toContainEqual(
      expect.objectContaining({ studyInstanceUid: study, reason: KeepReason.OutsideStorage }),
    );
    expect(out.status === 'stored' && existsSync(out.storedPath)).toBe(true);
    expect(await getStudy(db.pool, study)).toMatchObject({ state: 'exported' });
  });

  it('no rules: nothing is looked at or removed', async () => {
    const r = await runRetention({ pool: db.pool, rules: [], storageDir });
    expect(r).toEqual({ dryRun: false, removed: [], kept: [], truncated: false });
    expect(existsSync(files.ctRoom?.[0] as string)).toBe(true);
  });

  it('pages through many completed studies (page size 2) and stops at maxStudies', async () => {
    const r = await runRetention({ pool: db.pool, rules: RULES, storageDir, dryRun: true, pageSize: 2, maxStudies: 3 });
    expect(r.truncated).toBe(true);
    expect(r.removed.length + r.kept.length).toBe(3);
    const all = await runRetention({ pool: db.pool, rules: RULES, storageDir, dryRun: true, pageSize: 2 });
    expect(all.truncated).toBe(false);
    // xrayYoung, ctRoom, stowFailed, mixed, the outside one: all kept, none skipped by paging.
    expect(all.kept).toHaveLength(5);
  });

  it('the gateway sweeper runs passes on its interval and stops cleanly', async () => {
    const study = `${ROOT}.10`;
    const paths = await receive(study, 2, { via: 'stow-rs' });
    await complete(study, 'exported', 15);
    const sweeper = new RetentionSweeper({ pool: db.pool, rules: RULES, storageDir, intervalMs: 50 });
    sweeper.start();
    try {
      const deadline = Date.now() + 10_000;
      while ((await getStudy(db.pool, study))?.state !== 'expunged' && Date.now() < deadline)
        await new Promise((r) => setTimeout(r, 25));
    } finally {
      await sweeper.stop();
    }
    expect(await getStudy(db.pool, study)).toMatchObject({ state: 'expunged' });
    for (const p of paths) expect(existsSync(p)).toBe(false);
    expect(sweeper.removedStudies).toBe(1);
    expect(sweeper.removedInstances).toBe(2);
    // Nothing of the store's tree is left for the removed studies, and the rest is intact.
    expect(readdirSync(storageDir).sort()).toEqual(
      [S.xrayYoung, S.ctRoom, S.stowFailed, S.mixed, S.receiving, S.xrayOld].sort(),
    );
  });
});

function keyOf(uid: string): string {
  return Object.entries(S).find(([, v]) => v === uid)?.[0] as string;
}

// [REQ-RET-03] The running gateway: its retention service removes an exported study on its interval.
describe.each(backends())('retention in the running gateway on %s', (backend) => {
  let t: TestGateway;
  beforeAll(async () => {
    t = await startTestGateway(backend, {
      retention: { intervalMs: 1000, rules: [{ name: 'all-stow', via: 'stow-rs', exportedAfterDays: 0 }] },
    });
  });
  afterAll(async () => {
    await t?.close();
  });

  it('STOW-RS in → SR exported → files removed by the retention service, audited; metrics count it', async () => {
    const sample = path.join(FIXTURES_DIR, 'sample-study', 'RG3_J2KR.dcm');
    const client = new DicomwebClient({
      baseUrl: `${t.gw.baseUrl}/dicomweb`,
      timeoutMs: 30_000,
      auth: { type: 'bearer', token: t.tokens.ingest },
    });
    const stow = await client.storeInstances(undefined, [sample]);
    expect(stow.httpStatus).toBe(200);
    const sop = stow.referenced[0]?.sopInstanceUid as string;
    const { rows } = await t.gw.db.pool.query<{ study_instance_uid: string; file_path: string }>(
      'SELECT study_instance_uid, file_path FROM instances WHERE sop_instance_uid = $1',
      [sop],
    );
    const row = rows[0] as { study_instance_uid: string; file_path: string };
    expect(existsSync(row.file_path)).toBe(true);
    await waitFor(
      'study expunged',
      async () => ((await getStudy(t.gw.db.pool, row.study_instance_uid))?.state === 'expunged' ? true : undefined),
      120_000,
    );
    expect(existsSync(row.file_path)).toBe(false);
    const { rows: ev } = await t.gw.db.pool.query<{ actor: string; detail: { rule: string } }>(
      `SELECT actor, detail FROM audit_events WHERE kind = 'study-deleted' AND study_instance_uid = $1`,
      [row.study_instance_uid],
    );
    expect(ev).toEqual([{ actor: 'test', detail: expect.objectContaining({ rule: 'all-stow', instances: 1 }) }]);
    // The draft SR we produced is not a received instance: it stays in the outbox.
    const { rows: jobs } = await t.gw.db.pool.query<{ result: { location: string } }>(
      `SELECT result FROM jobs WHERE study_instance_uid = $1 AND state = 'succeeded'`,
      [row.study_instance_uid],
    );
    expect(existsSync(jobs[0]?.result.location as string)).toBe(true);
    const metrics = await (await fetch(`${t.gw.baseUrl}/metrics`, { headers: t.auth('operator') })).text();
    expect(metrics).toMatch(/^radscribe_instances_expunged\{via="stow-rs"\} 1$/m);
    expect(metrics).toMatch(/^radscribe_studies\{state="expunged"\} 1$/m);
    expect(metrics).toMatch(/^radscribe_storage_free_bytes [1-9][0-9]*$/m);
    expect(metrics).toMatch(/^radscribe_storage_accepting 1$/m);
    expect((await verifyAuditChain(t.gw.db.pool)).ok).toBe(true);
  });
});
