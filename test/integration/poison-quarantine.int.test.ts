import { createHash, randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { AuditRecorder } from '../../src/audit/audit-recorder.js';
import { dicomLimits } from '../../src/dicom/limits.js';
import { ErrorCode, errorCodeOf, RETRYABLE_CODES } from '../../src/errors.js';
import { InstanceQuarantine } from '../../src/ingest/instance-quarantine.js';
import { InstanceRepository } from '../../src/ingest/instance-repository.js';
import { InstanceStore } from '../../src/ingest/instance-store.js';
import type { ReceivedFile } from '../../src/ingest/types.js';
import { childLogger } from '../../src/logger.js';
import { type DescribeImagesDeps, type DraftModel, describeImages } from '../../src/pipeline/describe-images.js';
import { ImagePrepClient } from '../../src/pipeline/image-prep-client.js';
import { FIXTURES_DIR } from '../../src/runtime-paths.js';
import { type TestDatabase, testDatabase } from '../support/db.js';
import { type GatewayChild, startGatewayChild, stowBuffers } from '../support/gateway-child-client.js';
import { heapHeavyInstance, newUid, validInstance } from '../support/hostile-corpus.js';

/**
 * [REQ-SEC-02] (issue 9, "a poison study must be quarantined after its first crash, not retried
 * into the ground") An instance whose decoding kills the image-prep worker (heap exhausted), breaks
 * a DICOM limit, or is in flight when the whole process dies, is quarantined at its first crash and
 * audited as instance-quarantined; the study's other instances are still described; a study with
 * nothing else fails with a clear, permanent reason. Real worker thread, real database, real files.
 */
jest.setTimeout(600_000);

const preprocessorConfig = JSON.parse(
  readFileSync(path.join(FIXTURES_DIR, 'models', 'tiny-mllama', 'preprocessor_config.json'), 'utf8'),
) as unknown;

/** The model through its seam (STYLE §2.3); the decode, not the model, is under test here. */
const model: DraftModel = {
  info: {
    name: 'poison-test',
    version: '1',
    deviceUid: '2.25.4242',
    fixture: false,
    prompt: 'Describe.',
    provider: 'cpu',
  },
  preprocessorConfig,
  describe: async () => ({ text: 'described', tokenIds: [1], stopReason: 'eos', timings: {} }),
};

function receive(work: string, bytes: Buffer): ReceivedFile {
  const p = path.join(work, `${randomBytes(6).toString('hex')}.tmp`);
  writeFileSync(p, bytes);
  return { path: p, sizeBytes: bytes.length, sha256: createHash('sha256').update(bytes).digest('hex') };
}

describe('poison quarantine in the pipeline (real image-prep worker)', () => {
  let db: TestDatabase;
  let work: string;
  let store: InstanceStore;
  let prep: ImagePrepClient;
  let deps: DescribeImagesDeps;
  const log = childLogger('poison-test');

  beforeAll(async () => {
    db = await testDatabase();
    work = mkdtempSync(path.join(tmpdir(), 'rs-poison-'));
    store = new InstanceStore({ pool: db.pool, storageDir: path.join(work, 'instances') });
    // A small worker heap, so the heap-heavy header kills the worker; a frame bound stricter than
    // ingest's (as after an operator tightens dicomLimits), so a stored instance breaks it at decode.
    prep = new ImagePrepClient({
      maxOldGenerationSizeMb: 32,
      frameTimeoutMs: 120_000,
      limits: dicomLimits({ maxDecodedFrameBytes: 2048, maxDecodedInstanceBytes: 2048 }),
    });
    deps = {
      model,
      images: prep,
      selection: { eachImage: ['OT'], perSeriesSlices: 1, multiFrameFrames: 1 },
      recorder: new AuditRecorder(db.pool),
      quarantine: new InstanceQuarantine(db.pool),
    };
  });
  afterAll(async () => {
    await prep.close();
    await db.close();
    rmSync(work, { recursive: true, force: true });
  });

  async function storeAll(instances: { bytes: Buffer }[]): Promise<void> {
    for (const i of instances) {
      const out = await store.accept(receive(work, i.bytes), { via: 'stow-rs' });
      expect(out.status).toBe('stored');
    }
  }

  async function quarantineRows(study: string) {
    const { rows } = await db.pool.query<{ sop: string; reason: string | null; marker: Date | null }>(
      `SELECT sop_instance_uid AS sop, quarantine_reason AS reason, decode_started_at AS marker
       FROM instances WHERE study_instance_uid = $1 ORDER BY instance_number`,
      [study],
    );
    return rows;
  }

  async function quarantineAudit(study: string) {
    const { rows } = await db.pool.query<{ sop: string; outcome: number; detail: Record<string, unknown> }>(
      `SELECT sop_instance_uids[1] AS sop, outcome, detail FROM audit_events
       WHERE kind = 'instance-quarantined' AND study_instance_uid = $1 ORDER BY id`,
      [study],
    );
    return rows;
  }

  it('quarantines the worker killer and the limit breaker at their first failure; the others are described', async () => {
    const study = newUid();
    const series = newUid();
    const killer = heapHeavyInstance({ study, series, sop: newUid(), instanceNumber: 1 }, 1000);
    const validA = validInstance({ study, series, sop: newUid(), instanceNumber: 2 });
    const tooLarge = validInstance({ study, series, sop: newUid(), instanceNumber: 3 }, 64); // 4096-byte frame
    const validB = validInstance({ study, series, sop: newUid(), instanceNumber: 4 });
    await storeAll([killer, validA, tooLarge, validB]);
    const repo = new InstanceRepository(db.pool);

    const first = await describeImages(
      deps,
      { studyInstanceUid: study, instances: await repo.listForStudy(study) },
      { log },
    );
    expect(first.findings.map((f) => f.sopInstanceUid)).toEqual([validA.sop, validB.sop]);
    expect(first.skipped).toEqual([
      { sopInstanceUid: killer.sop, frame: 1, code: ErrorCode.OutOfResources },
      { sopInstanceUid: tooLarge.sop, frame: 1, code: ErrorCode.DicomHostile },
    ]);
    expect(await quarantineRows(study)).toEqual([
      { sop: killer.sop, reason: 'worker-out-of-memory', marker: null },
      { sop: validA.sop, reason: null, marker: null },
      { sop: tooLarge.sop, reason: 'limit-exceeded', marker: null },
      { sop: validB.sop, reason: null, marker: null },
    ]);
    const audit = await quarantineAudit(study);
    expect(audit.map((a) => [a.sop, a.outcome, a.detail.reason])).toEqual([
      [killer.sop, 8, 'worker-out-of-memory'],
      [tooLarge.sop, 8, 'limit-exceeded'],
    ]);
    expect(audit[1]?.detail.violation).toBe('decoded-frame-too-large');

    // The next run (a retry, or a new job after a late instance) never opens them again.
    const listed = await repo.listForStudy(study);
    expect(listed.map((i) => i.sopInstanceUid)).toEqual([validA.sop, validB.sop]);
    const second = await describeImages(deps, { studyInstanceUid: study, instances: listed }, { log });
    expect(second.skipped).toEqual([]);
    expect(second.findings).toHaveLength(2);
    expect(await quarantineAudit(study)).toHaveLength(2);
  });

  it('a study whose only image crashes the worker fails at once with a permanent, clear reason', async () => {
    const study = newUid();
    const killer = heapHeavyInstance({ study, series: newUid(), sop: newUid(), instanceNumber: 1 }, 1000);
    await storeAll([killer]);
    const repo = new InstanceRepository(db.pool);
    let err: unknown;
    await describeImages(deps, { studyInstanceUid: study, instances: await repo.listForStudy(study) }, { log }).catch(
      (e: unknown) => {
        err = e;
      },
    );
    expect(errorCodeOf(err)).toBe(ErrorCode.DicomHostile);
    expect(RETRYABLE_CODES.has(errorCodeOf(err))).toBe(false);
    expect((err as Error).message).toMatch(/no image left to describe: 1 instance\(s\) quarantined/);
    expect((await quarantineRows(study))[0]?.reason).toBe('worker-out-of-memory');
    // Retried anyway (an operator re-queues it): refused again without opening the file.
    let again: unknown;
    await describeImages(deps, { studyInstanceUid: study, instances: await repo.listForStudy(study) }, { log }).catch(
      (e: unknown) => {
        again = e;
      },
    );
    expect(errorCodeOf(again)).toBe(ErrorCode.DicomUnsupported); // nothing left to select
    expect(await quarantineAudit(study)).toHaveLength(1);
  });

  it('a frame past its time limit gets its worker terminated and is quarantined (timed-out)', async () => {
    const study = newUid();
    const series = newUid();
    const slow = heapHeavyInstance({ study, series, sop: newUid(), instanceNumber: 1 }, 1000);
    const other = validInstance({ study, series, sop: newUid(), instanceNumber: 2 });
    await storeAll([slow, other]);
    const impatient = new ImagePrepClient({ frameTimeoutMs: 300 });
    try {
      const repo = new InstanceRepository(db.pool);
      const out = await describeImages(
        { ...deps, images: impatient },
        { studyInstanceUid: study, instances: await repo.listForStudy(study) },
        { log },
      );
      expect(out.findings.map((f) => f.sopInstanceUid)).toEqual([other.sop]);
      expect(out.skipped).toEqual([{ sopInstanceUid: slow.sop, frame: 1, code: ErrorCode.Timeout }]);
      expect((await quarantineRows(study)).map((r) => r.reason)).toEqual(['timed-out', null]);
    } finally {
      await impatient.close();
    }
  });

  it('a marker left by a process that died while decoding quarantines that instance unopened', async () => {
    const study = newUid();
    const series = newUid();
    const victim = validInstance({ study, series, sop: newUid(), instanceNumber: 1 });
    const other = validInstance({ study, series, sop: newUid(), instanceNumber: 2 });
    await storeAll([victim, other]);
    const q = new InstanceQuarantine(db.pool);
    await q.decodeStarting({ sopInstanceUid: victim.sop }); // and then the process died
    const repo = new InstanceRepository(db.pool);
    const out = await describeImages(
      deps,
      { studyInstanceUid: study, instances: await repo.listForStudy(study) },
      { log },
    );
    expect(out.findings.map((f) => f.sopInstanceUid)).toEqual([other.sop]);
    expect((await quarantineRows(study)).map((r) => r.reason)).toEqual(['process-died-while-decoding', null]);
  });
});

/** A database of its own on the PostgreSQL server, so a second gateway process finds the first one's data. */
async function serverDatabase(): Promise<{ url: string; drop(): Promise<void> } | undefined> {
  const base = process.env.DATABASE_URL;
  if (!base) return undefined;
  const name = `radscribe_poison_${randomBytes(5).toString('hex')}`;
  const admin = new pg.Client({ connectionString: base });
  await admin.connect();
  await admin.query(`CREATE DATABASE ${name}`);
  await admin.end();
  return {
    url: base.replace(/^(postgres(?:ql)?:\/\/[^/]*)\/[^?]*/, `$1/${name}`),
    async drop() {
      const c = new pg.Client({ connectionString: base });
      await c.connect();
      await c.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
      await c.end();
    },
  };
}

interface AuditCount {
  kind: string;
  outcome: number;
  reason: string | null;
  n: number;
}

describe(`poison quarantine across a process death (gateway child, ${process.env.DATABASE_URL ? 'postgresql' : 'pglite'})`, () => {
  let child: GatewayChild | undefined;
  let dataDir: string;
  let server: Awaited<ReturnType<typeof serverDatabase>>;
  afterAll(async () => {
    await child?.stop();
    await server?.drop();
    rmSync(dataDir, { recursive: true, force: true });
  });

  it('kill -9 while an instance is decoding: after the restart it is quarantined, the rest described and exported', async () => {
    dataDir = mkdtempSync(path.join(tmpdir(), 'rs-poison-gw-'));
    server = await serverDatabase();
    const overrides = {
      dataDir,
      ...(server ? { database: { url: server.url } } : {}),
      ingest: { stabilityWindowMs: 300 },
      jobs: { pollIntervalMs: 100, leaseMs: 2000, maxAttempts: 3 },
      destinations: [{ name: 'outbox', type: 'folder', path: path.join(dataDir, 'outbox') }],
      defaultDestination: 'outbox',
    };
    child = await startGatewayChild(overrides);
    const study = newUid();
    const series = newUid();
    // Parsing this header takes the worker seconds: the window in which the process is killed.
    const poison = heapHeavyInstance({ study, series, sop: newUid(), instanceNumber: 1 }, 1000);
    const valid = validInstance({ study, series, sop: newUid(), instanceNumber: 2 });
    const res = await stowBuffers(
      `${child.baseUrl}/dicomweb/studies`,
      [poison.bytes, valid.bytes],
      child.tokens.ingest,
    );
    expect(res.status).toBe(200);

    // Wait until the marker says the poison is being decoded, then kill the whole process.
    const deadline = Date.now() + 120_000;
    for (;;) {
      const row = await child.ask<{ decode_started_at: string | null } | null>('ROW', poison.sop);
      if (row?.decode_started_at) break;
      if (Date.now() > deadline) throw new Error(`poison never started decoding: ${child.stderr()}`);
      await new Promise((r) => setTimeout(r, 20));
    }
    const killed = child;
    const exited = new Promise((r) => killed.proc.once('exit', r));
    killed.proc.kill('SIGKILL');
    await exited;

    child = await startGatewayChild(overrides);
    const restarted = child;
    let audit: AuditCount[] = [];
    const until = Date.now() + 300_000;
    while (!audit.some((a) => a.kind === 'sr-exported')) {
      if (Date.now() > until)
        throw new Error(`no SR exported after the restart: ${JSON.stringify(audit)} ${restarted.stderr()}`);
      await new Promise((r) => setTimeout(r, 250));
      audit = await restarted.ask<AuditCount[]>('AUDIT');
    }
    const row = await restarted.ask<Record<string, unknown>>('ROW', poison.sop);
    expect(row).toMatchObject({ quarantine_reason: 'process-died-while-decoding', decode_started_at: null });
    expect(row.quarantined_at).not.toBeNull();
    expect((await restarted.ask<Record<string, unknown>>('ROW', valid.sop)).quarantine_reason).toBeNull();
    const quarantined = audit.filter((a) => a.kind === 'instance-quarantined');
    expect(quarantined).toEqual([expect.objectContaining({ reason: 'process-died-while-decoding', outcome: 8, n: 1 })]);
    expect(audit.filter((a) => a.kind === 'sr-exported').reduce((s, a) => s + a.n, 0)).toBe(1);
  });
});
