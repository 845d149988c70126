import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { freePort } from '../../bench/support/free-port.js';
import { verifyAuditChain } from '../../src/audit/audit-log.js';
import { parsePart10 } from '../../src/dicom/dataset.js';
import { buildEncapsulatedPdf } from '../../src/dicom/pdf/encapsulated-pdf.js';
import { loadPdfFonts } from '../../src/dicom/pdf/fonts.js';
import { buildDraftSr } from '../../src/dicom/sr/draft-sr.js';
import { SopClass, TransferSyntax } from '../../src/dicom/uids.js';
import { AssociationFailure, isDimseAssociationError } from '../../src/dimse/requestor.js';
import { StoreOutcome, storeInstances } from '../../src/dimse/store-scu.js';
import { ErrorCode } from '../../src/errors.js';
import { DimseDestination } from '../../src/export/sr-destination.js';
import { type Backend, backends, startTestGateway, type TestGateway, waitFor } from '../support/gateway.js';
import { FIXED_NOW, paramsFor, sibling, sourceHeader } from '../unit/dicom/sr/sr-fixtures.js';

/**
 * [REQ-DIMSE-STORE-SCU] (issue 11) Our C-STORE SCU against DCMTK storescp, a real Storage SCP:
 * the SR and its PDF companion on one association, received byte-identical in content (dcmdump);
 * an SCP that accepts the SR only in Implicit VR LE gets it converted and refuses the PDF's SOP
 * class (per-instance results); an SCP that cannot write answers 0xA700 (transient); a small
 * maximum PDU length is honoured; a refused association, a closed port and a slow SCP are
 * transient/permanent as PS3.4 B.2.3 and PS3.8 say.
 */
const run = promisify(execFile);
const SAMPLE = path.join(__dirname, '../fixtures/sample-study/RG3_J2KR.dcm');
const sampleDs = parsePart10(readFileSync(SAMPLE)).dataset;

interface Scp {
  readonly port: number;
  readonly dir: string;
  /** storescp's verbose log so far (its own account of associations and stores). */
  log(): string;
  stop(): Promise<void>;
}

/** DCMTK storescp on a free port, writing to `dir`; resolves once it accepts TCP connections. */
async function startStorescp(dir: string, args: readonly string[] = []): Promise<Scp> {
  const port = await freePort();
  // stdbuf: line-buffered output, so the log is there when a test reads it (a pipe is block-buffered).
  const argv = ['-oL', '-eL', 'storescp', '-v', '-aet', 'STORESCP', '-od', dir, ...args, String(port)];
  const proc: ChildProcess = spawn('stdbuf', argv, {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let log = '';
  proc.stdout?.on('data', (d: Buffer) => {
    log += d.toString();
  });
  let stderr = '';
  proc.stderr?.on('data', (d: Buffer) => {
    log += d.toString();
    stderr = (stderr + d.toString()).slice(-2000);
  });
  const exited = new Promise<void>((r) => proc.once('exit', () => r()));
  const deadline = Date.now() + 10_000;
  for (;;) {
    if (proc.exitCode !== null) throw new Error(`storescp exited ${proc.exitCode}: ${stderr}`);
    const ok = await new Promise<boolean>((resolve) => {
      const s = net.connect(port, '127.0.0.1');
      s.once('connect', () => {
        s.destroy();
        resolve(true);
      });
      s.once('error', () => resolve(false));
    });
    if (ok) break;
    if (Date.now() > deadline) throw new Error(`storescp did not listen: ${stderr}`);
    await new Promise((r) => setTimeout(r, 50));
  }
  return {
    port,
    dir,
    log: () => log,
    stop: async () => {
      if (proc.exitCode === null) {
        proc.kill('SIGTERM');
        await exited;
      }
    },
  };
}

async function dcmdump(file: string): Promise<string> {
  return (await run('dcmdump', ['+P', '0002,0010', '+P', '0008,0018', '+P', '0040,a160', file])).stdout;
}

const ct = sourceHeader('CT_small.dcm');
// Non-ASCII on purpose: the Implicit VR rewrite must pass UTF-8 text through byte for byte.
const FINDING = 'Kein Nachweis einer Fraktur, Straße, 日本語. STORE-SCU-MARKER';
const sr = buildDraftSr({ ...paramsFor([ct, sibling(ct, 1)], [FINDING]), profile: 'report' });
const SR_CLASS = sr.dataset.SOPClassUID as string;

let root: string;
let pdf: Awaited<ReturnType<typeof buildEncapsulatedPdf>>;
const scps: Scp[] = [];
beforeAll(async () => {
  root = mkdtempSync(path.join(tmpdir(), 'radscribe-storescu-'));
  pdf = await buildEncapsulatedPdf({ sr, fonts: loadPdfFonts(), now: FIXED_NOW });
});
afterAll(async () => {
  await Promise.all(scps.map((s) => s.stop()));
  rmSync(root, { recursive: true, force: true });
});

async function scp(name: string, args: readonly string[] = []): Promise<Scp> {
  const dir = path.join(root, name);
  mkdirSync(dir, { recursive: true });
  const s = await startStorescp(dir, args);
  scps.push(s);
  return s;
}

const target = (s: Scp) => ({ host: '127.0.0.1', port: s.port, calledAeTitle: 'STORESCP' });

describe('C-STORE SCU against DCMTK storescp', () => {
  it('sends the SR and its PDF companion on one association; storescp holds both, same UIDs and content', async () => {
    // 4096 is storescp's smallest maximum PDU length, and it enforces it (a longer P-DATA-TF is
    // "DUL Illegal PDU Length" and an A-ABORT): the PDF goes in many fragments, each within it.
    const s = await scp('ok', ['--max-pdu', '4096']);
    expect(pdf.part10.length).toBeGreaterThan(4 * 4096);
    const results = await storeInstances(target(s), [sr.part10, pdf.part10], { callingAeTitle: 'RADSCRIBE' });
    expect(results).toEqual([
      expect.objectContaining({
        sopInstanceUid: sr.sopInstanceUid,
        outcome: StoreOutcome.Success,
        status: 0,
        transferSyntax: TransferSyntax.ExplicitVrLittleEndian,
      }),
      expect.objectContaining({
        sopInstanceUid: pdf.sopInstanceUid,
        sopClassUid: SopClass.EncapsulatedPdfStorage,
        outcome: StoreOutcome.Success,
        status: 0,
      }),
    ]);
    const files = readdirSync(s.dir).sort();
    expect(files).toHaveLength(2);
    // storescp's own log: one association carried both, and was released ("Association
    // Received" also counts the readiness probe's bare TCP connect).
    await waitFor(
      'storescp log of the release',
      async () => (/Association Release/.test(s.log()) ? true : undefined),
      5_000,
    );
    expect(s.log().match(/Association Acknowledged/g)).toHaveLength(1);
    expect(s.log().match(/Association Release/g)).toHaveLength(1);
    expect(s.log().match(/Received Store Request/g)).toHaveLength(2);
    const dumps = await Promise.all(files.map((f) => dcmdump(path.join(s.dir, f))));
    const srDump = dumps.find((d) => d.includes(sr.sopInstanceUid)) ?? '';
    expect(srDump).toContain('LittleEndianExplicit');
    expect(srDump).toContain(`[${sr.sopInstanceUid}]`);
    expect(srDump).toContain(FINDING);
    expect(dumps.some((d) => d.includes(`[${pdf.sopInstanceUid}]`))).toBe(true);
    // The PDF's bytes arrived whole: dcmdump reads the file without complaint and the document length matches.
    const pdfFile = path.join(s.dir, files.find((_, i) => dumps[i]?.includes(pdf.sopInstanceUid)) as string);
    const { stdout } = await run('dcmdump', ['+P', '0042,0011', pdfFile]);
    expect(stdout).toMatch(new RegExp(`# ${pdf.pdf.length + (pdf.pdf.length % 2)}, 1 EncapsulatedDocument`));
  });

  it('converts the SR to Implicit VR LE when only that is accepted; the PDF, whose SOP class is refused, fails alone', async () => {
    const cfg = path.join(root, 'implicit-only.cfg');
    writeFileSync(
      cfg,
      [
        '[[TransferSyntaxes]]',
        '[ImplicitOnly]',
        `TransferSyntax1 = ${TransferSyntax.ImplicitVrLittleEndian}`,
        '[[PresentationContexts]]',
        '[SrOnly]',
        `PresentationContext1 = ${SR_CLASS}\\ImplicitOnly`,
        `PresentationContext2 = ${SopClass.Verification}\\ImplicitOnly`,
        '[[Profiles]]',
        '[Default]',
        'PresentationContexts = SrOnly',
        '',
      ].join('\n'),
    );
    const s = await scp('implicit', ['-xf', cfg, 'Default']);
    const results = await storeInstances(target(s), [sr.part10, pdf.part10], { callingAeTitle: 'RADSCRIBE' });
    expect(results[0]).toMatchObject({
      outcome: StoreOutcome.Success,
      transferSyntax: TransferSyntax.ImplicitVrLittleEndian,
    });
    expect(results[1]).toMatchObject({ sopInstanceUid: pdf.sopInstanceUid, outcome: StoreOutcome.Permanent });
    expect(results[1]?.reason).toMatch(/no presentation context accepted .*abstract-syntax-not-supported/);
    const files = readdirSync(s.dir);
    expect(files).toHaveLength(1);
    const dump = await dcmdump(path.join(s.dir, files[0] as string));
    expect(dump).toContain('LittleEndianImplicit');
    expect(dump).toContain(`[${sr.sopInstanceUid}]`);
    expect(dump).toContain(FINDING);
  });

  it('an SCP that cannot store answers 0xA700 Out of Resources: transient, pacs-unavailable', async () => {
    const s = await scp('full');
    rmSync(s.dir, { recursive: true });
    const results = await storeInstances(target(s), [sr.part10], { callingAeTitle: 'RADSCRIBE' });
    expect(results).toEqual([
      expect.objectContaining({
        outcome: StoreOutcome.Transient,
        status: 0xa700,
        reason: expect.stringMatching(/0xA700/),
      }),
    ]);
    const dest = new DimseDestination('pacs', {
      host: '127.0.0.1',
      port: s.port,
      calledAeTitle: 'STORESCP',
      callingAeTitle: 'RADSCRIBE',
    });
    expect(dest.location).toBe(`dicom://STORESCP@127.0.0.1:${s.port}`);
    await expect(
      dest.send({
        studyInstanceUid: ct.StudyInstanceUID as string,
        sopInstanceUid: sr.sopInstanceUid,
        part10: sr.part10,
      }),
    ).rejects.toMatchObject({ code: ErrorCode.PacsUnavailable });
  });

  it('a refused association, a closed port, a silent or unaccepting peer and a slow SCP fail as typed errors', async () => {
    const refusing = await scp('refuse', ['--refuse']);
    const rejected = await storeInstances(target(refusing), [sr.part10], { callingAeTitle: 'RADSCRIBE' }).catch(
      (e: unknown) => e,
    );
    expect(isDimseAssociationError(rejected, AssociationFailure.Rejected)).toBe(true);
    expect((rejected as Error).message).toMatch(/association rejected \(result \d, source \d, reason \d\)/);

    const closed = await freePort();
    const refused = await storeInstances({ host: '127.0.0.1', port: closed, calledAeTitle: 'X' }, [sr.part10], {
      callingAeTitle: 'RADSCRIBE',
    }).catch((e: unknown) => e);
    expect(isDimseAssociationError(refused, AssociationFailure.ConnectFailed)).toBe(true);
    expect(refused).toMatchObject({ code: ErrorCode.PacsUnavailable });

    // A service on the port that takes the connection and never answers (reads and drops
    // everything): ARTIM expires on the A-ASSOCIATE-RQ (PS3.8 §9.1.5), transient.
    const silent = net.createServer((sock) => {
      sock.on('data', () => undefined);
      sock.on('error', () => undefined);
    });
    await new Promise<void>((r) => silent.listen(0, '127.0.0.1', r));
    const silentPort = (silent.address() as net.AddressInfo).port;
    try {
      const mute = await storeInstances({ host: '127.0.0.1', port: silentPort, calledAeTitle: 'X' }, [sr.part10], {
        callingAeTitle: 'RADSCRIBE',
        timeouts: { artimMs: 400 },
      }).catch((e: unknown) => e);
      expect(isDimseAssociationError(mute, AssociationFailure.ArtimTimeout)).toBe(true);
      expect(mute).toMatchObject({ code: ErrorCode.PacsUnavailable });
    } finally {
      silent.close();
    }

    // A listener that never accepts, its accept queue full (backlog 1 and three connections
    // waiting): the kernel drops our SYN, so the TCP connect itself times out.
    const busyPort = await freePort();
    // A process that listens and then blocks its only thread, so it never accepts.
    const busy = spawn(
      process.execPath,
      [
        '-e',
        `require('net').createServer().listen({ port: ${busyPort}, host: '127.0.0.1', backlog: 1 }, () =>
           Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 30000))`,
      ],
      { stdio: 'ignore' },
    );
    const fillers: net.Socket[] = [];
    try {
      await new Promise((r) => setTimeout(r, 500));
      for (let i = 0; i < 3; i++) fillers.push(net.connect(busyPort, '127.0.0.1').on('error', () => {}));
      await new Promise((r) => setTimeout(r, 300));
      const t1 = Date.now();
      const hung = await storeInstances({ host: '127.0.0.1', port: busyPort, calledAeTitle: 'X' }, [sr.part10], {
        callingAeTitle: 'RADSCRIBE',
        timeouts: { connectMs: 400 },
      }).catch((e: unknown) => e);
      expect(isDimseAssociationError(hung, AssociationFailure.ConnectTimeout)).toBe(true);
      expect(hung).toMatchObject({ code: ErrorCode.PacsUnavailable });
      expect(Date.now() - t1).toBeLessThan(2_000);
    } finally {
      for (const f of fillers) f.destroy();
      busy.kill();
    }

    const slow = await scp('slow', ['--sleep-during', '3']);
    const t0 = Date.now();
    const late = await storeInstances(target(slow), [sr.part10, pdf.part10], {
      callingAeTitle: 'RADSCRIBE',
      timeouts: { dimseMs: 700 },
    });
    expect(Date.now() - t0).toBeLessThan(2_500);
    expect(late.map((r) => r.outcome)).toEqual([StoreOutcome.Transient, StoreOutcome.Transient]);
    expect(late[0]?.reason).toMatch(/no DIMSE response within 700 ms/);
    expect(late[1]?.reason).toMatch(/association lost/);
  });
});

describe('gateway export to a dimse destination (storescp that takes the SR but not the PDF)', () => {
  let t: TestGateway;
  let s: Scp;
  beforeAll(async () => {
    const cfg = path.join(root, 'sr-only.cfg');
    writeFileSync(
      cfg,
      [
        '[[TransferSyntaxes]]',
        '[Uncompressed]',
        `TransferSyntax1 = ${TransferSyntax.ExplicitVrLittleEndian}`,
        `TransferSyntax2 = ${TransferSyntax.ImplicitVrLittleEndian}`,
        '[[PresentationContexts]]',
        '[SrOnly]',
        `PresentationContext1 = ${SopClass.ComprehensiveSrStorage}\\Uncompressed`,
        '[[Profiles]]',
        '[Default]',
        'PresentationContexts = SrOnly',
        '',
      ].join('\n'),
    );
    s = await scp('gateway', ['-xf', cfg, 'Default']);
    t = await startTestGateway(backends()[0] as Backend, {
      dimse: { listeners: [{ aeTitle: 'RADSCRIBE', port: 0, host: '127.0.0.1' }] },
      destinations: [
        {
          name: 'legacy',
          type: 'dimse',
          host: '127.0.0.1',
          port: s.port,
          calledAeTitle: 'STORESCP',
          callingAeTitle: 'RADSCRIBE_GW',
          pdfCompanion: true,
        },
      ],
      defaultDestination: 'legacy',
    });
  }, 60_000);
  afterAll(async () => {
    await t?.close();
  });

  it('sends both on one association; the SR is exported, the refused PDF fails the job; one audit event each', async () => {
    const port = t.gw.dimseListeners[0]?.port as number;
    await run('storescu', ['-aet', 'MODALITY1', '-aec', 'RADSCRIBE', '-xv', '127.0.0.1', String(port), SAMPLE], {
      timeout: 60_000,
    });
    const study = sampleDs.StudyInstanceUID as string;
    const job = await waitFor(
      'describe-study job',
      async () => {
        const r = await t.gw.db.pool.query<{ state: string; last_error: string | null }>(
          'SELECT state, last_error FROM jobs WHERE study_instance_uid = $1 ORDER BY id DESC LIMIT 1',
          [study],
        );
        const j = r.rows[0];
        return j && (j.state === 'succeeded' || j.state === 'failed') ? j : undefined;
      },
      120_000,
    );
    // Refused SOP class: permanent, no retry.
    expect(job.state).toBe('failed');
    const location = `dicom://STORESCP@127.0.0.1:${s.port}`;
    const audit = await t.gw.db.pool.query<{ detail: Record<string, unknown>; sop_instance_uids: string[] }>(
      `SELECT detail, sop_instance_uids FROM audit_events WHERE kind = 'sr-exported' ORDER BY id`,
    );
    expect(audit.rows.map((r) => r.detail)).toEqual([
      expect.objectContaining({ object: 'sr', location }),
      expect.objectContaining({ object: 'pdf', code: ErrorCode.PacsRejected }),
    ]);
    const srUid = audit.rows[0]?.sop_instance_uids[0] as string;
    const files = readdirSync(s.dir);
    expect(files).toHaveLength(1);
    expect(await dcmdump(path.join(s.dir, files[0] as string))).toContain(`[${srUid}]`);
    expect((await verifyAuditChain(t.gw.db.pool)).ok).toBe(true);
  });
});

describe('gateway export to a dimse destination that answers 0xA700 until space is freed', () => {
  let t: TestGateway;
  let s: Scp;
  beforeAll(async () => {
    s = await scp('full-then-free');
    // storescp cannot write: every C-STORE is answered A700 Out of Resources.
    rmSync(s.dir, { recursive: true });
    t = await startTestGateway(backends()[0] as Backend, {
      jobs: { pollIntervalMs: 100, backoffBaseMs: 500, backoffMaxMs: 1_000, maxAttempts: 10 },
      dimse: { listeners: [{ aeTitle: 'RADSCRIBE', port: 0, host: '127.0.0.1' }] },
      destinations: [{ name: 'legacy', type: 'dimse', host: '127.0.0.1', port: s.port, calledAeTitle: 'STORESCP' }],
      defaultDestination: 'legacy',
    });
  }, 60_000);
  afterAll(async () => {
    await t?.close();
  });

  it('A700 is transient: the job is retried with pacs-unavailable, and succeeds once the SCP can store', async () => {
    const port = t.gw.dimseListeners[0]?.port as number;
    await run('storescu', ['-aet', 'MODALITY1', '-aec', 'RADSCRIBE', '-xv', '127.0.0.1', String(port), SAMPLE], {
      timeout: 60_000,
    });
    const study = sampleDs.StudyInstanceUID as string;
    const jobRow = () =>
      t.gw.db.pool
        .query<{ state: string; attempts: number; error_code: string | null }>(
          'SELECT state, attempts, error_code FROM jobs WHERE study_instance_uid = $1 ORDER BY id DESC LIMIT 1',
          [study],
        )
        .then((r) => r.rows[0]);
    const retried = await waitFor(
      'a failed attempt',
      async () => {
        const j = await jobRow();
        return j && j.error_code !== null ? j : undefined;
      },
      120_000,
    );
    expect(retried).toMatchObject({ error_code: ErrorCode.PacsUnavailable });
    expect(retried.state).not.toBe('failed');
    mkdirSync(s.dir, { recursive: true });
    const done = await waitFor(
      'the retry to succeed',
      async () => {
        const j = await jobRow();
        return j && (j.state === 'succeeded' || j.state === 'failed') ? j : undefined;
      },
      60_000,
    );
    expect(done.state).toBe('succeeded');
    expect(done.attempts).toBeGreaterThanOrEqual(2);
    expect(readdirSync(s.dir)).toHaveLength(1);
    const audit = await t.gw.db.pool.query<{ outcome: number; detail: Record<string, unknown> }>(
      `SELECT outcome, detail FROM audit_events WHERE kind = 'sr-exported' ORDER BY id`,
    );
    // One failed attempt or more (A700), then the export.
    expect(audit.rows.at(-1)).toMatchObject({ outcome: 0, detail: expect.objectContaining({ object: 'sr' }) });
    expect(audit.rows.slice(0, -1).every((r) => r.detail.code === ErrorCode.PacsUnavailable)).toBe(true);
    expect(audit.rows.length).toBeGreaterThanOrEqual(2);
  });
});
