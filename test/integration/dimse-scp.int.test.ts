import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import {
  copyFileSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { freePort } from '../../bench/support/free-port.js';
import { AuditRecorder } from '../../src/audit/audit-recorder.js';
import { CommandField, CommandTag, encodeCommandSet } from '../../src/dimse/dimse-command.js';
import { echo, parseEchoTarget } from '../../src/dimse/echo-scu.js';
import { DICOM_APPLICATION_CONTEXT, decodePdu, encodePdu, type Pdu, PduReader, PduType } from '../../src/dimse/pdu.js';
import { StorageScp } from '../../src/dimse/storage-scp.js';
import { InstanceStore } from '../../src/ingest/instance-store.js';
import { getStudy } from '../../src/ingest/study-lifecycle.js';
import { backendName, type TestDatabase, testDatabase } from '../support/db.js';

jest.setTimeout(120_000);

const run = promisify(execFile);
const CORPUS = path.join(__dirname, '..', 'fixtures', 'corpus');
const AET = 'RADSCRIBE';

let db: TestDatabase;
let work: string;
let tmpDir: string;
let storageDir: string;
let scp: StorageScp;
let sink: InstanceStore;
let deflated: string;
let refDir: string;
let refPort: number;
let refScp: ChildProcess | undefined;

/** Offset of the data set in a PS3.10 file: after preamble, "DICM" and group 0002 (its group length). */
function dataSetOf(file: Buffer): Buffer {
  if (file.toString('latin1', 128, 132) !== 'DICM') throw new Error('not a PS3.10 file');
  // (0002,0000) UL, explicit VR LE: tag(4) VR(2) len(2) value(4) at offset 132.
  const groupLength = file.readUInt32LE(140);
  return file.subarray(144 + groupLength);
}

function filesUnder(dir: string): string[] {
  if (!existsSync(dir)) return [];
  return readdirSync(dir, { recursive: true, withFileTypes: true })
    .filter((d) => d.isFile())
    .map((d) => path.join(d.parentPath, d.name));
}

async function waitForEmptySpool(): Promise<void> {
  for (let i = 0; i < 50 && filesUnder(tmpDir).length > 0; i++) await new Promise((r) => setTimeout(r, 50));
  expect(filesUnder(tmpDir)).toEqual([]);
}

async function dcmtk(cmd: string, args: string[]): Promise<{ code: number; out: string }> {
  try {
    const { stdout, stderr } = await run(cmd, args, { timeout: 60_000 });
    return { code: 0, out: stdout + stderr };
  } catch (err: unknown) {
    const e = err as { code?: number; stdout?: string; stderr?: string };
    return { code: typeof e.code === 'number' ? e.code : -1, out: `${e.stdout ?? ''}${e.stderr ?? ''}` };
  }
}

beforeAll(async () => {
  db = await testDatabase();
  work = mkdtempSync(path.join(tmpdir(), 'radscribe-dimse-'));
  tmpDir = path.join(work, 'tmp');
  storageDir = path.join(work, 'instances');
  mkdirSync(tmpDir, { recursive: true });
  sink = new InstanceStore({ pool: db.pool, storageDir });
  deflated = path.join(work, 'deflated.dcm');
  copyFileSync(path.join(CORPUS, 'compressed/CTImage_deflated.dcm'), deflated);
  const m = await dcmtk('dcmodify', ['-nb', '-m', 'SOPInstanceUID=1.2.826.0.1.3680043.10.1234.1', deflated]);
  if (m.code !== 0) throw new Error(`dcmodify: ${m.out}`);
  scp = new StorageScp({
    listener: {
      aeTitle: AET,
      port: 0,
      host: '127.0.0.1',
      allowedCallingAeTitles: ['STORESCU', 'ECHOSCU', 'MODALITY1'],
    },
    sink,
    tmpDir,
    pool: db.pool,
    refusals: new AuditRecorder(db.pool),
    maxPduLength: 64 * 1024,
    timeouts: { artimMs: 2_000, idleMs: 3_000 },
  });
  await scp.start();
  refDir = path.join(work, 'storescp');
  mkdirSync(refDir);
  refPort = await freePort();
  refScp = spawn('storescp', ['-aet', 'REF', '+xa', '+B', '-od', refDir, String(refPort)], { stdio: 'ignore' });
  for (let i = 0; i < 50; i++) {
    if ((await dcmtk('echoscu', ['-aec', 'REF', '127.0.0.1', String(refPort)])).code === 0) break;
    await new Promise((r) => setTimeout(r, 100));
  }
});
afterAll(async () => {
  await scp?.close();
  refScp?.kill();
  await db?.close();
  rmSync(work, { recursive: true, force: true });
});

describe(`DIMSE C-ECHO / C-STORE SCP against DCMTK (${backendName()})`, () => {
  it('answers echoscu', async () => {
    const r = await dcmtk('echoscu', ['-aet', 'ECHOSCU', '-aec', AET, '127.0.0.1', String(scp.port)]);
    expect(r).toMatchObject({ code: 0 });
  });

  // Distinct SOP instances, several transfer syntaxes. The deflated one is rewritten by dcmodify with its own SOP Instance UID (the CTImage family
  // shares one) in beforeAll.
  const cases: { file: string; opts: string[]; ts: string }[] = [
    { file: 'compressed/CTImage_implicit_le.dcm', opts: ['-xi'], ts: '1.2.840.10008.1.2' },
    { file: 'charset/chrFren.dcm', opts: ['-xe'], ts: '1.2.840.10008.1.2.1' },
    { file: 'DEFLATED', opts: ['-xd'], ts: '1.2.840.10008.1.2.1.99' },
    { file: 'compressed/CT0012.not_fragmented_bot_rle.dcm', opts: ['-xr'], ts: '1.2.840.10008.1.2.5' },
    { file: 'compressed/JPEGBaseline_1s_1f_u_08_08.dcm', opts: ['-xy'], ts: '1.2.840.10008.1.2.4.50' },
    { file: 'compressed/TOSHIBA_J2K_SIZ0_PixRep1.dcm', opts: ['-xv'], ts: '1.2.840.10008.1.2.4.90' },
    { file: 'compressed/CT1_JLSN.dcm', opts: ['-xu'], ts: '1.2.840.10008.1.2.4.81' },
    { file: 'compressed/MR_small_jp2klossless.dcm', opts: ['-xv'], ts: '1.2.840.10008.1.2.4.90' },
    { file: 'compressed/PT_GH184_jpeg_lossless.dcm', opts: ['-xs'], ts: '1.2.840.10008.1.2.4.70' },
  ];
  it.each(cases)(
    'storescu $file ($ts): instance row, study, audit; stored data set = what DCMTK sent',
    async ({ file, opts, ts }) => {
      const src = file === 'DEFLATED' ? deflated : path.join(CORPUS, file);
      // The reference: the same send to DCMTK storescp in bit-preserving mode (+B), which writes the
      // data set exactly as received (storescu drops group lengths and trailing padding as it sends).
      const refBefore = new Set(readdirSync(refDir));
      const ref = await dcmtk('storescu', ['-aec', 'REF', ...opts, '127.0.0.1', String(refPort), src]);
      expect(ref.code).toBe(0);
      const refFile = readdirSync(refDir).find((f) => !refBefore.has(f));
      expect(refFile).toBeDefined();
      const sent = dataSetOf(readFileSync(path.join(refDir, refFile as string)));

      const r = await dcmtk('storescu', ['-aet', 'STORESCU', '-aec', AET, ...opts, '127.0.0.1', String(scp.port), src]);
      expect(r.out).not.toMatch(/E:/);
      expect(r.code).toBe(0);
      const sop = (refFile as string).replace(/^[A-Za-z]+\./, '');
      const rows = await db.pool.query<{
        study_instance_uid: string;
        file_path: string;
        transfer_syntax_uid: string;
        received_via: string;
        actor: string;
      }>(
        'SELECT study_instance_uid, file_path, transfer_syntax_uid, received_via, actor FROM instances WHERE sop_instance_uid = $1',
        [sop],
      );
      expect(rows.rows).toHaveLength(1);
      const row = rows.rows[0] as (typeof rows.rows)[0];
      expect(row).toMatchObject({ received_via: 'c-store', actor: 'STORESCU', transfer_syntax_uid: ts });
      expect(dataSetOf(readFileSync(row.file_path)).equals(sent)).toBe(true);
      const study = await getStudy(db.pool, row.study_instance_uid);
      expect(study?.instanceCount).toBeGreaterThanOrEqual(1);
      const audit = await db.pool.query(
        `SELECT detail FROM audit_events WHERE kind = 'instance-received' AND $1 = ANY(sop_instance_uids)`,
        [sop],
      );
      expect(audit.rows).toHaveLength(1);
      expect(audit.rows[0].detail).toMatchObject({ via: 'c-store', transferSyntaxUid: ts });
      // Nothing left in the spool.
      expect(filesUnder(tmpDir)).toEqual([]);
    },
  );

  it('an identical resend is answered 0000 and stored once; same UID, other content is refused (0111)', async () => {
    const count = async (): Promise<number> =>
      (await db.pool.query('SELECT count(*)::int AS n FROM instances')).rows[0].n;
    const before = await count();
    const same = await dcmtk('storescu', [
      '-aet',
      'STORESCU',
      '-aec',
      AET,
      '-xe',
      '127.0.0.1',
      String(scp.port),
      path.join(CORPUS, 'charset/chrFren.dcm'),
    ]);
    expect(same.code).toBe(0);
    // The explicit-VR copy of the CTImage family: same SOP Instance UID as the implicit one stored above.
    const other = await dcmtk('storescu', [
      '-aet',
      'STORESCU',
      '-aec',
      AET,
      '-xe',
      '127.0.0.1',
      String(scp.port),
      path.join(CORPUS, 'compressed/CTImage_explicit_le.dcm'),
    ]);
    expect(other.code).not.toBe(0);
    const refused = await db.pool.query<{ detail: Record<string, unknown> }>(
      `SELECT detail FROM audit_events WHERE kind = 'instance-refused' AND detail->>'via' = 'c-store'`,
    );
    expect(refused.rows.map((r) => r.detail.failureReason)).toContain(0x0111);
    expect(await count()).toBe(before);
    expect(filesUnder(tmpDir)).toEqual([]);
  });

  it('refuses a data set whose UIDs differ from the C-STORE-RQ with 0xA900 (the path the SCP uses)', async () => {
    const bytes = readFileSync(path.join(CORPUS, 'compressed/JPEGBaseline_1s_1f_u_08_08.dcm'));
    const p = path.join(tmpDir, 'mismatch.part');
    writeFileSync(p, bytes);
    const out = await sink.accept(
      { path: p, sizeBytes: bytes.length, sha256: createHash('sha256').update(bytes).digest('hex') },
      {
        via: 'c-store',
        actor: 'STORESCU',
        expectedSopClassUid: '1.2.840.10008.5.1.4.1.1.7',
        expectedSopInstanceUid: '1.2.3.4',
      },
    );
    expect(out).toMatchObject({ status: 'failed', failureReason: 0xa900 });
    expect(existsSync(p)).toBe(false);
  });

  it('rejects an unknown calling AE (reason 3) and an unknown called AE (reason 7), audited', async () => {
    const src = path.join(CORPUS, 'compressed/CTImage_explicit_le.dcm');
    const a = await dcmtk('storescu', ['-aet', 'INTRUDER', '-aec', AET, '127.0.0.1', String(scp.port), src]);
    expect(a.code).not.toBe(0);
    expect(a.out).toMatch(/Rejected|reject/i);
    const b = await dcmtk('echoscu', ['-aet', 'ECHOSCU', '-aec', 'NOTUS', '127.0.0.1', String(scp.port)]);
    expect(b.code).not.toBe(0);
    const rows = await db.pool.query<{ actor: string; detail: Record<string, unknown> }>(
      `SELECT actor, detail FROM audit_events WHERE kind = 'association-rejected' ORDER BY id`,
    );
    expect(rows.rows).toEqual([
      expect.objectContaining({
        actor: 'INTRUDER',
        detail: expect.objectContaining({ reason: 3, calledAeTitle: AET }),
      }),
      expect.objectContaining({
        actor: 'ECHOSCU',
        detail: expect.objectContaining({ reason: 7, calledAeTitle: 'NOTUS' }),
      }),
    ]);
  });

  it('answers a malformed PDU with A-ABORT and keeps serving', async () => {
    const answer = await new Promise<Buffer>((resolve, reject) => {
      const s = net.connect(scp.port, '127.0.0.1');
      const chunks: Buffer[] = [];
      s.on('data', (c) => chunks.push(c));
      s.on('close', () => resolve(Buffer.concat(chunks)));
      s.on('error', reject);
      // An A-ASSOCIATE-RQ whose body is 10 bytes (its fixed part alone is 68).
      s.write(Buffer.concat([Buffer.from([0x01, 0, 0, 0, 0, 10]), Buffer.alloc(10)]));
    });
    const pdu = decodePdu(answer);
    expect(pdu).toMatchObject({ type: PduType.Abort, source: 2 });
    // An oversized PDU header: refused before its body is read.
    const big = await new Promise<Buffer>((resolve, reject) => {
      const s = net.connect(scp.port, '127.0.0.1');
      const chunks: Buffer[] = [];
      s.on('data', (c) => chunks.push(c));
      s.on('close', () => resolve(Buffer.concat(chunks)));
      s.on('error', reject);
      s.write(Buffer.from([0x01, 0, 0x7f, 0xff, 0xff, 0xff]));
    });
    expect(decodePdu(big)).toMatchObject({ type: PduType.Abort, source: 2 });
    const r = await dcmtk('echoscu', ['-aet', 'ECHOSCU', '-aec', AET, '127.0.0.1', String(scp.port)]);
    expect(r.code).toBe(0);
  });

  it('radscribe echo (our C-ECHO SCU) against DCMTK storescp and against our SCP', async () => {
    const dcmtkPeer = await echo(
      { host: '127.0.0.1', port: refPort, calledAeTitle: 'REF' },
      { callingAeTitle: 'ECHOSCU' },
    );
    expect(dcmtkPeer).toMatchObject({ ok: true, outcome: 'success', status: 0 });
    expect(dcmtkPeer.echoMs).toBeLessThan(1_000);
    const ours = await echo({ host: '127.0.0.1', port: scp.port, calledAeTitle: AET }, { callingAeTitle: 'ECHOSCU' });
    expect(ours).toMatchObject({ ok: true, status: 0 });
    const wrong = await echo(
      { host: '127.0.0.1', port: scp.port, calledAeTitle: 'NOTUS' },
      { callingAeTitle: 'ECHOSCU' },
    );
    expect(wrong).toMatchObject({ ok: false, outcome: 'association rejected (result 1, source 1, reason 7)' });
    expect(parseEchoTarget('pacs.example:104:MAIN_PACS')).toEqual({
      host: 'pacs.example',
      port: 104,
      calledAeTitle: 'MAIN_PACS',
    });
    expect(() => parseEchoTarget('pacs:104:BAD\\AE')).toThrow(/backslash/);
  });

  /** A raw association: our own A-ASSOCIATE-RQ, then whatever the test writes; resolves with all PDUs read until close. */
  function rawAssociation(after: (s: net.Socket) => void): Promise<{ pdus: Pdu[]; ms: number }> {
    return new Promise((resolve, reject) => {
      const t0 = Date.now();
      const s = net.connect(scp.port, '127.0.0.1');
      const reader = new PduReader({ maxPduLength: 1 << 20, maxControlPduLength: 1 << 16 });
      const pdus: Pdu[] = [];
      s.on('data', (c) => {
        reader.push(c);
        for (let p = reader.next(); p; p = reader.next()) {
          pdus.push(p);
          if (p.type === PduType.AssociateAc) after(s);
        }
      });
      s.on('close', () => resolve({ pdus, ms: Date.now() - t0 }));
      s.on('error', reject);
      s.write(
        encodePdu({
          type: PduType.AssociateRq,
          protocolVersion: 1,
          calledAeTitle: AET,
          callingAeTitle: 'MODALITY1',
          applicationContext: DICOM_APPLICATION_CONTEXT,
          presentationContexts: [
            { id: 1, abstractSyntax: '1.2.840.10008.5.1.4.1.1.7', transferSyntaxes: ['1.2.840.10008.1.2.1'] },
            { id: 3, abstractSyntax: '1.2.840.10008.5.1.4.1.2.1.1', transferSyntaxes: ['1.2.840.10008.1.2'] },
            { id: 5, abstractSyntax: '1.2.840.10008.5.1.4.1.1.2', transferSyntaxes: ['1.2.840.10008.1.2.4.100'] },
          ],
          userInformation: { maxPduLength: 16384, implementationClassUid: '1.2.3.4' },
        }),
      );
    });
  }

  function storeCommand(sopInstanceUid: string): Buffer {
    return encodeCommandSet(
      new Map<number, number | string>([
        [CommandTag.AffectedSopClassUid, '1.2.840.10008.5.1.4.1.1.7'],
        [CommandTag.CommandField, CommandField.CStoreRq],
        [CommandTag.MessageId, 1],
        [CommandTag.Priority, 0],
        [CommandTag.CommandDataSetType, 0],
        [CommandTag.AffectedSopInstanceUid, sopInstanceUid],
      ]),
    );
  }

  it('negotiates each context on its own: storage accepted, Query/Retrieve result 3, an unknown syntax result 4', async () => {
    const { pdus } = await rawAssociation((s) => s.write(encodePdu({ type: PduType.ReleaseRq })));
    const ac = pdus[0];
    expect(ac?.type).toBe(PduType.AssociateAc);
    if (ac?.type !== PduType.AssociateAc) return;
    expect(ac.presentationContexts).toEqual([
      { id: 1, result: 0, transferSyntax: '1.2.840.10008.1.2.1' },
      expect.objectContaining({ id: 3, result: 3 }),
      expect.objectContaining({ id: 5, result: 4 }),
    ]);
    expect(ac.userInformation.maxPduLength).toBe(64 * 1024);
    expect(pdus[1]?.type).toBe(PduType.ReleaseRp);
  });

  it('aborts a P-DATA-TF longer than the advertised maximum, from its header, and drops the partial data set', async () => {
    const { pdus } = await rawAssociation((s) => {
      s.write(
        encodePdu({
          type: PduType.PData,
          pdvs: [{ contextId: 1, command: true, last: true, fragment: storeCommand('1.2.3.4.1') }],
        }),
      );
      s.write(
        encodePdu({
          type: PduType.PData,
          pdvs: [{ contextId: 1, command: false, last: false, fragment: Buffer.alloc(1000) }],
        }),
      );
      // A P-DATA-TF header announcing 1 MiB (we advertised 64 KiB); its body never comes.
      s.write(Buffer.from([0x04, 0, 0x00, 0x10, 0x00, 0x00]));
    });
    expect(pdus.map((p) => p.type)).toEqual([PduType.AssociateAc, PduType.Abort]);
    expect(pdus[1]).toMatchObject({ source: 2, reason: 6 });
    await waitForEmptySpool();
  });

  it('aborts a sender that stalls mid data set (network timeout) and deletes its spool file', async () => {
    const { pdus, ms } = await rawAssociation((s) => {
      s.write(
        encodePdu({
          type: PduType.PData,
          pdvs: [{ contextId: 1, command: true, last: true, fragment: storeCommand('1.2.3.4.2') }],
        }),
      );
      s.write(
        encodePdu({
          type: PduType.PData,
          pdvs: [{ contextId: 1, command: false, last: false, fragment: Buffer.alloc(4000) }],
        }),
      );
      // ...and then nothing: a half-open or stalled sender.
    });
    expect(pdus.map((p) => p.type)).toEqual([PduType.AssociateAc, PduType.Abort]);
    expect(ms).toBeGreaterThanOrEqual(2_900);
    await waitForEmptySpool();
  });

  it('aborts a data fragment on a context that was not accepted, and one with no C-STORE command', async () => {
    const a = await rawAssociation((s) =>
      s.write(
        encodePdu({
          type: PduType.PData,
          pdvs: [{ contextId: 3, command: true, last: true, fragment: storeCommand('1.2.3.4.3') }],
        }),
      ),
    );
    expect(a.pdus.map((p) => p.type)).toEqual([PduType.AssociateAc, PduType.Abort]);
    const b = await rawAssociation((s) =>
      s.write(
        encodePdu({
          type: PduType.PData,
          pdvs: [{ contextId: 1, command: false, last: true, fragment: Buffer.alloc(10) }],
        }),
      ),
    );
    expect(b.pdus.map((p) => p.type)).toEqual([PduType.AssociateAc, PduType.Abort]);
    expect((await dcmtk('echoscu', ['-aet', 'ECHOSCU', '-aec', AET, '127.0.0.1', String(scp.port)])).code).toBe(0);
  });

  it('rejects an association over maxAssociations as transient (2/3/2), then accepts again once one closes', async () => {
    const small = new StorageScp({
      listener: { aeTitle: AET, port: 0, host: '127.0.0.1' },
      sink,
      tmpDir,
      pool: db.pool,
      maxAssociations: 1,
    });
    await small.start();
    try {
      const held = net.connect(small.port, '127.0.0.1');
      await new Promise((r) => held.once('connect', r));
      const rejected = await echo({ host: '127.0.0.1', port: small.port, calledAeTitle: AET });
      expect(rejected).toMatchObject({ ok: false, outcome: 'association rejected (result 2, source 3, reason 2)' });
      held.destroy();
      await new Promise((r) => setTimeout(r, 100));
      expect(await echo({ host: '127.0.0.1', port: small.port, calledAeTitle: AET })).toMatchObject({ ok: true });
    } finally {
      await small.close();
    }
  });

  it('closes a connection that never sends an A-ASSOCIATE-RQ when ARTIM expires', async () => {
    const started = Date.now();
    await new Promise<void>((resolve) => {
      const s = net.connect(scp.port, '127.0.0.1');
      s.on('close', () => resolve());
      s.on('error', () => undefined);
    });
    const took = Date.now() - started;
    expect(took).toBeGreaterThanOrEqual(1_900);
    expect(took).toBeLessThan(8_000);
  });
});
