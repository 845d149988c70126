import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, statfsSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Readable } from 'node:stream';
import { errorHandler } from '../../src/app.js';
import { verifyAuditChain } from '../../src/audit/audit-log.js';
import { AuditRecorder } from '../../src/audit/audit-recorder.js';
import { DiskGuard } from '../../src/ingest/disk-guard.js';
import { InstanceStore } from '../../src/ingest/instance-store.js';
import { PgRemoteStudyTracker } from '../../src/ingest/remote-study-tracker.js';
import { FailureReason } from '../../src/ingest/types.js';
import type { DicomJsonDataset } from '../../src/pacs/dicom-json.js';
import { getNumber, getSequence, getString, Tag } from '../../src/pacs/dicom-json.js';
import { DicomwebClient } from '../../src/pacs/dicomweb-client.js';
import { multipartRelatedContentType, newBoundary } from '../../src/pacs/media-type.js';
import { multipartBody, type OutboundPart } from '../../src/pacs/multipart.js';
import { QidoPoller } from '../../src/pacs/qido-poller.js';
import { createStowRouter } from '../../src/pacs/stow-router.js';
import { FIXTURES_DIR } from '../../src/runtime-paths.js';
import { backendName, type TestDatabase, testDatabase } from '../support/db.js';
import { backends, startTestGateway, type TestGateway } from '../support/gateway.js';
import { startTestServer, type TestHttpServer } from '../support/http.js';

/**
 * [REQ-DSK-01] issue 9: a full disk refuses up front — 507 Insufficient Storage (RFC 4918 §11.5) for
 * a whole STOW-RS request by its Content-Length, Failure Reason 0xA700 (PS3.4 B.2.3) per instance —
 * audited as 'instance-refused' (outcome 8), with nothing half-written left behind. Run on a real
 * small file system (an 8 MiB tmpfs mounted by the test; needs root) and, everywhere, with a reserve
 * larger than the free space of the ordinary temp directory.
 */
jest.setTimeout(60_000);

const CT = path.join(FIXTURES_DIR, 'dicom', 'CT_small.dcm'); // 39 206 bytes
const MR = path.join(FIXTURES_DIR, 'dicom', 'MR_small.dcm'); // 9 830 bytes
const CT_SOP = '1.3.6.1.4.1.5962.1.1.1.1.1.20040119072730.12322';
const MIB = 1024 * 1024;

let db: TestDatabase;

beforeAll(async () => {
  db = await testDatabase();
});
afterAll(async () => {
  await db?.close();
});

function filesUnder(dir: string): string[] {
  if (!existsSync(dir)) return [];
  return readdirSync(dir, { recursive: true, withFileTypes: true })
    .filter((d) => d.isFile())
    .map((d) => path.join(d.parentPath, d.name));
}

/** A STOW-RS front end on `root` (spool and store on the same file system, as in the gateway). */
async function stowOn(root: string, guard: DiskGuard): Promise<{ server: TestHttpServer; store: InstanceStore }> {
  const tmpDir = path.join(root, 'tmp');
  const storageDir = path.join(root, 'instances');
  mkdirSync(tmpDir, { recursive: true });
  mkdirSync(storageDir, { recursive: true });
  const store = new InstanceStore({ pool: db.pool, storageDir, guard });
  const server = await startTestServer((app) => {
    app.use('/dicomweb', createStowRouter({ sink: store, tmpDir, refusals: new AuditRecorder(db.pool) }));
    app.use(errorHandler());
  });
  return { server, store };
}

const dicomPart = (file: string): OutboundPart => ({ contentType: 'application/dicom', body: file });

/** POST with a Content-Length (the body buffered) or chunked (streamed, no Content-Length). */
async function post(
  server: TestHttpServer,
  files: string[],
  mode: 'content-length' | 'chunked',
  headers: Record<string, string> = {},
): Promise<{ status: number; body: Record<string, unknown> }> {
  const boundary = newBoundary();
  const stream = multipartBody(files.map(dicomPart), boundary);
  const chunks: Buffer[] = [];
  if (mode === 'content-length') for await (const c of stream) chunks.push(c as Buffer);
  const res = await fetch(`${server.url}/dicomweb/studies`, {
    method: 'POST',
    headers: { ...headers, 'content-type': multipartRelatedContentType(boundary) },
    body: (mode === 'content-length' ? Buffer.concat(chunks) : Readable.toWeb(stream)) as unknown as BodyInit,
    duplex: 'half',
  } as RequestInit);
  const text = await res.text();
  return { status: res.status, body: text ? (JSON.parse(text) as Record<string, unknown>) : {} };
}

async function refusals(
  since: number,
): Promise<{ outcome: number; detail: Record<string, unknown>; sops: string[] | null; study: string | null }[]> {
  const { rows } = await db.pool.query<{
    outcome: number;
    detail: Record<string, unknown>;
    sop_instance_uids: string[] | null;
    study_instance_uid: string | null;
  }>(
    `SELECT outcome, detail, sop_instance_uids, study_instance_uid FROM audit_events
     WHERE kind = 'instance-refused' AND id > $1 ORDER BY id`,
    [since],
  );
  return rows.map((r) => ({
    outcome: r.outcome,
    detail: r.detail,
    sops: r.sop_instance_uids,
    study: r.study_instance_uid,
  }));
}

async function lastAuditId(): Promise<number> {
  const { rows } = await db.pool.query<{ id: string | null }>('SELECT max(id) AS id FROM audit_events');
  return Number(rows[0]?.id ?? 0);
}

async function instanceCount(): Promise<number> {
  const { rows } = await db.pool.query<{ n: number }>('SELECT count(*)::int AS n FROM instances');
  return rows[0]?.n ?? 0;
}

const freeOf = (dir: string) => Number(statfsSync(dir).bavail) * Number(statfsSync(dir).bsize);

/**
 * Small real file systems the test mounts itself (root only; where mount fails, those tests are
 * skipped and the reserve-based tests below still run): an 8 MiB tmpfs (4 KiB pages) and an 8 MiB
 * ext4 on a loop device (1 KiB blocks, `-m 0` so that root, which the test runs as, meets ENOSPC
 * where an unprivileged gateway would).
 */
interface SmallFs {
  readonly kind: 'tmpfs' | 'ext4';
  readonly dir: string;
  readonly image?: string;
}
function mountSmallFs(kind: SmallFs['kind']): SmallFs | undefined {
  if (process.platform !== 'linux') return undefined;
  const dir = mkdtempSync(path.join(tmpdir(), `radscribe-${kind}-`));
  const image = kind === 'ext4' ? `${dir}.img` : undefined;
  try {
    if (image) {
      writeFileSync(image, '');
      execFileSync('truncate', ['-s', '8M', image]);
      execFileSync('mkfs.ext4', ['-q', '-F', '-m', '0', image], { stdio: 'ignore' });
      execFileSync('mount', ['-o', 'loop', image, dir], { stdio: 'ignore' });
    } else execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=8m,mode=0700', 'tmpfs', dir], { stdio: 'ignore' });
    return { kind, dir, ...(image ? { image } : {}) };
  } catch {
    rmSync(dir, { recursive: true, force: true });
    if (image) rmSync(image, { force: true });
    return undefined;
  }
}

const SMALL_FS = (['tmpfs', 'ext4'] as const).flatMap((k) => mountSmallFs(k) ?? []);
afterAll(() => {
  for (const fs of SMALL_FS) {
    execFileSync('umount', [fs.dir]);
    rmSync(fs.dir, { recursive: true, force: true });
    if (fs.image) rmSync(fs.image, { force: true });
  }
});
const smallFsCases =
  SMALL_FS.length > 0
    ? describe.each(SMALL_FS.map((f) => [f.kind, f] as const))
    : describe.skip.each([['none', undefined]]);

smallFsCases(`on a real 8 MiB file system (%s, ${backendName()})`, (_kind, fs) => {
  const root = (fs as SmallFs | undefined)?.dir ?? '';
  const block = root ? Number(statfsSync(root).bsize) : 4096;
  const blocks = (bytes: number) => Math.ceil(bytes / block) * block;
  /** Free space after syncfs(2) (`sync -f`), so that no write-back in flight blurs the count. */
  const settledFree = (dir: string): number => {
    execFileSync('sync', ['-f', dir]);
    return freeOf(dir);
  };
  let server: TestHttpServer;
  let ballast: string;
  const reserve = 1 * MIB;

  beforeAll(async () => {
    ({ server } = await stowOn(root, new DiskGuard({ dir: root, reserveBytes: reserve, watermarkPercent: 0 })));
    ballast = path.join(root, 'ballast');
  });
  afterAll(async () => {
    await server?.close();
  });
  afterEach(async () => {
    // Each test starts from an empty store: an instance already stored is a duplicate, which takes no space.
    await db.pool.query('DELETE FROM instances');
    rmSync(ballast, { force: true });
    rmSync(path.join(root, 'instances'), { recursive: true, force: true });
    mkdirSync(path.join(root, 'instances'));
  });

  /**
   * Leave exactly `free` bytes available (a multiple of the block size). A large ballast file costs
   * ext4 an extent block or two besides its data, so the size is corrected until the count is exact.
   */
  function leaveFree(free: number): void {
    rmSync(ballast, { force: true });
    let size = Math.max(0, settledFree(root) - free);
    for (let i = 0; i < 4 && settledFree(root) !== free; i++) {
      writeFileSync(ballast, Buffer.alloc(size));
      size += settledFree(root) - free;
    }
    expect(settledFree(root)).toBe(free);
  }

  it('a request whose Content-Length would go below the reserve → 507, nothing written, audited', async () => {
    // Free: the reserve plus 16 KiB; the request (two instances, ~50 KB) does not fit above it.
    leaveFree(reserve + 16 * 1024);
    const before = await lastAuditId();
    const rows = await instanceCount();
    const r = await post(server, [CT, MR], 'content-length');
    expect(r.status).toBe(507);
    expect(r.body).toMatchObject({ code: 'storage-full' });
    // The client-visible text names sizes, never a path.
    expect(JSON.stringify(r.body)).not.toContain(root);
    expect(filesUnder(path.join(root, 'tmp'))).toEqual([]);
    expect(filesUnder(path.join(root, 'instances'))).toEqual([]);
    expect(settledFree(root)).toBe(reserve + 16 * 1024);
    expect(await instanceCount()).toBe(rows);
    const events = await refusals(before);
    expect(events).toHaveLength(1);
    expect(events[0]).toMatchObject({
      outcome: 8,
      detail: { via: 'stow-rs', scope: 'request', errorCode: 'storage-full', minFreeBytes: reserve },
    });
    expect(Number(events[0]?.detail.incomingBytes)).toBeGreaterThan(49_000);
  });

  it('the same request fits once there is room: 200 (the check counts only what the request brings)', async () => {
    leaveFree(reserve + blocks(39_206) + blocks(9_830) + 16 * 1024);
    const r = await post(server, [CT, MR], 'content-length');
    expect(r.status).toBe(200);
    expect(filesUnder(path.join(root, 'instances'))).toHaveLength(2);
  });

  it('chunked (no Content-Length): the instance that crosses the reserve gets 0xA700, the other is stored (202)', async () => {
    // Room for CT above the reserve, not for CT + MR.
    leaveFree(reserve + blocks(39_206) + block);
    const before = await lastAuditId();
    const r = await post(server, [CT, MR], 'chunked');
    expect(r.status).toBe(202);
    const body = r.body as DicomJsonDataset;
    const stored = getSequence(body, Tag.ReferencedSOPSequence);
    const failed = getSequence(body, Tag.FailedSOPSequence);
    expect(stored.map((i) => getString(i, Tag.ReferencedSOPInstanceUID))).toEqual([CT_SOP]);
    expect(failed).toHaveLength(1);
    expect(getNumber(failed[0] as DicomJsonDataset, Tag.FailureReason)).toBe(FailureReason.OutOfResources);
    const refusedSop = getString(failed[0] as DicomJsonDataset, Tag.ReferencedSOPInstanceUID);
    expect(refusedSop).toMatch(/^[0-9.]+$/);
    // Nothing of the refused instance is left: no spool file, no stored file, no row.
    expect(filesUnder(path.join(root, 'tmp'))).toEqual([]);
    expect(filesUnder(path.join(root, 'instances'))).toHaveLength(1);
    const { rows } = await db.pool.query('SELECT 1 FROM instances WHERE sop_instance_uid = $1', [refusedSop]);
    expect(rows).toHaveLength(0);
    const events = await refusals(before);
    expect(events).toEqual([
      expect.objectContaining({
        outcome: 8,
        sops: [refusedSop],
        detail: expect.objectContaining({ via: 'stow-rs', scope: 'instance', failureReason: 0xa700 }),
      }),
    ]);
  });

  it('an identical resend needs no room: a duplicate is still acknowledged (200) when its spool crosses the reserve', async () => {
    leaveFree(reserve + blocks(39_206) + 16 * 1024);
    expect((await post(server, [CT], 'chunked')).status).toBe(200);
    // Now less room than the instance itself above the reserve: a new instance would get 0xA700 …
    leaveFree(reserve + block);
    const r = await post(server, [CT], 'chunked');
    expect(r.status).toBe(200);
    expect(getSequence(r.body as DicomJsonDataset, Tag.ReferencedSOPSequence)).toHaveLength(1);
    // … and the resend's spool file is gone again.
    expect(filesUnder(path.join(root, 'tmp'))).toEqual([]);
    expect(settledFree(root)).toBe(reserve + block);
  });

  it('a disk that really fills while spooling (guard limits 0): 507, no partial file left', async () => {
    const { server: bare } = await stowOn(
      path.join(root, 'bare'),
      new DiskGuard({ dir: root, reserveBytes: 0, watermarkPercent: 0 }),
    );
    try {
      leaveFree(3 * block); // CT_small needs 10 pages of tmpfs, 39 blocks of ext4
      const since = await lastAuditId();
      const r = await post(bare, [CT], 'chunked');
      expect(r.status).toBe(507);
      expect(r.body).toMatchObject({ code: 'storage-full' });
      // The refusal is audited by the router: the spool write met ENOSPC before any instance existed.
      const events = await refusals(since);
      expect(events).toHaveLength(1);
      expect(events[0]).toMatchObject({ outcome: 8, detail: { errorCode: 'storage-full', httpStatus: 507 } });
      expect(filesUnder(path.join(root, 'bare'))).toEqual([]);
      expect(settledFree(root)).toBe(3 * block);
    } finally {
      await bare.close();
    }
  });
});

describe(`a reserve larger than the free space (ordinary temp directory, ${backendName()})`, () => {
  let root: string;
  let server: TestHttpServer;
  beforeAll(async () => {
    root = mkdtempSync(path.join(tmpdir(), 'radscribe-reserve-'));
    const huge = freeOf(root) + 1024 ** 3;
    ({ server } = await stowOn(root, new DiskGuard({ dir: root, reserveBytes: huge, watermarkPercent: 0 })));
  });
  afterAll(async () => {
    await server?.close();
    rmSync(root, { recursive: true, force: true });
  });

  it.each(['content-length', 'chunked'] as const)('%s request → 507 before a byte is spooled', async (mode) => {
    const before = await lastAuditId();
    const r = await post(server, [MR], mode);
    expect(r.status).toBe(507);
    expect(filesUnder(root)).toEqual([]);
    const events = await refusals(before);
    expect(events).toHaveLength(1);
    expect(events[0]?.detail).toMatchObject({
      scope: 'request',
      incomingBytes: mode === 'chunked' ? 0 : expect.any(Number),
    });
  });

  it('WADO-RS: the poller checks before retrieving — no retrieve is sent, the poll fails storage-full', async () => {
    const STUDY = '1.2.826.0.1.3680043.8.498.1';
    const hits: string[] = [];
    const pacs = await startTestServer((app) => {
      app.get('/dicom-web/studies', (req, res) => {
        hits.push(`QIDO ${req.url}`);
        res
          .type('application/dicom+json')
          .send(JSON.stringify([{ [Tag.StudyInstanceUID]: { vr: 'UI', Value: [STUDY] } }]));
      });
      app.get('/dicom-web/studies/:study', (req, res) => {
        hits.push(`WADO ${req.params.study}`);
        res.status(500).end();
      });
    });
    try {
      const store = new InstanceStore({
        pool: db.pool,
        storageDir: path.join(root, 'instances'),
        guard: new DiskGuard({ dir: root, reserveBytes: freeOf(root) + 1024 ** 3, watermarkPercent: 0 }),
      });
      const poller = new QidoPoller({
        node: { name: 'fake-pacs', client: new DicomwebClient({ baseUrl: `${pacs.url}/dicom-web`, timeoutMs: 5000 }) },
        sink: store,
        tracker: new PgRemoteStudyTracker(db.pool),
        tmpDir: root,
      });
      const before = await lastAuditId();
      await expect(poller.pollOnce()).rejects.toMatchObject({ code: 'storage-full' });
      expect(hits.filter((h) => h.startsWith('WADO'))).toEqual([]);
      expect(hits.filter((h) => h.startsWith('QIDO'))).toHaveLength(1);
      // Not marked failed: the study is not at fault and keeps its retries.
      expect(await new PgRemoteStudyTracker(db.pool).isRetrieved('fake-pacs', STUDY)).toBe(false);
      const events = await refusals(before);
      expect(events).toEqual([
        expect.objectContaining({
          outcome: 8,
          study: STUDY,
          detail: expect.objectContaining({ via: 'wado-rs', scope: 'request' }),
        }),
      ]);
    } finally {
      await pacs.close();
    }
  });

  it('the audit chain still verifies', async () => {
    expect((await verifyAuditChain(db.pool)).ok).toBe(true);
  });
});

// The running gateway: storage.reserveBytes reaches the STOW-RS front end and the metrics.
describe.each(backends())('the gateway on %s with storage.reserveBytes above the free space', (backend) => {
  let t: TestGateway;
  beforeAll(async () => {
    t = await startTestGateway(backend, { storage: { reserveBytes: 2 ** 50, watermarkPercent: 0 } });
  });
  afterAll(async () => {
    await t?.close();
  });

  it('answers STOW-RS with 507, stores nothing, audits the refusal, and /metrics says it is not accepting', async () => {
    const r = await post({ url: t.gw.baseUrl } as TestHttpServer, [MR], 'content-length', t.auth('ingest'));
    expect(r.status).toBe(507);
    expect(r.body).toMatchObject({ code: 'storage-full' });
    const { rows } = await t.gw.db.pool.query<{ n: number }>('SELECT count(*)::int AS n FROM instances');
    expect(rows[0]?.n).toBe(0);
    expect(filesUnder(path.join(t.dataDir, 'instances'))).toEqual([]);
    expect(filesUnder(path.join(t.dataDir, 'tmp'))).toEqual([]);
    const { rows: ev } = await t.gw.db.pool.query<{ outcome: number }>(
      `SELECT outcome FROM audit_events WHERE kind = 'instance-refused'`,
    );
    expect(ev).toEqual([{ outcome: 8 }]);
    const metrics = await (await fetch(`${t.gw.baseUrl}/metrics`, { headers: t.auth('operator') })).text();
    expect(metrics).toMatch(/^radscribe_storage_accepting 0$/m);
    expect(metrics).toMatch(/^radscribe_storage_min_free_bytes 1125899906842624$/m);
  });
});
