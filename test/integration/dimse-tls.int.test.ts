import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import tls from 'node:tls';
import { promisify } from 'node:util';
import { freePort } from '../../bench/support/free-port.js';
import { verifyAuditChain } from '../../src/audit/audit-log.js';
import { AuditRecorder } from '../../src/audit/audit-recorder.js';
import { parsePart10 } from '../../src/dicom/dataset.js';
import { buildDraftSr } from '../../src/dicom/sr/draft-sr.js';
import { DICOM_TLS12_CIPHERS } from '../../src/dimse/dicom-tls.js';
import { echo } from '../../src/dimse/echo-scu.js';
import { AssociationFailure, isDimseAssociationError } from '../../src/dimse/requestor.js';
import { StorageScp } from '../../src/dimse/storage-scp.js';
import { ErrorCode, RadScribeError } from '../../src/errors.js';
import { DimseDestination } from '../../src/export/sr-destination.js';
import { InstanceStore } from '../../src/ingest/instance-store.js';
import { backendName, type TestDatabase, testDatabase } from '../support/db.js';
import { type Backend, backends, startTestGateway, type TestGateway, waitFor } from '../support/gateway.js';
import { makeDicomPki } from '../support/pki.js';
import { paramsFor, sibling, sourceHeader } from '../unit/dicom/sr/sr-fixtures.js';

/**
 * [REQ-DIMSE-TLS] (issue 11) DICOM TLS (PS3.15 B.1/B.9 BCP 195 profile) with real peers: DCMTK
 * echoscu/storescu (`+tls`, default Non-downgrading BCP 195 profile) against a RadScribe TLS
 * listener, and RadScribe's C-STORE SCU (dimse destination) and echo against DCMTK storescp `+tls`.
 * Certificates from two CAs (test/support/pki.ts): one both ends trust and a rogue one whose
 * certificates carry the same names. A wrong certificate on either side is refused at the
 * handshake: nothing reaches the Upper Layer, nothing is stored, the SCP audits a Security Alert.
 */
jest.setTimeout(120_000);

const run = promisify(execFile);
const CORPUS = path.join(__dirname, '..', 'fixtures', 'corpus');
const AET = 'RADSCRIBE';
const GOOD_FILE = path.join(CORPUS, 'charset/chrFren.dcm');
const ROGUE_FILE = path.join(CORPUS, 'compressed/CTImage_implicit_le.dcm');
const PLAIN_FILE = path.join(CORPUS, 'compressed/CT1_JLSN.dcm');
const sopOf = (f: string): string => parsePart10(readFileSync(f)).dataset.SOPInstanceUID as string;

let db: TestDatabase;
let work: string;
let pki: string;
let scp: StorageScp;
const children: ChildProcess[] = [];
const pem = (f: string): string => path.join(pki, f);

async function dcmtk(cmd: string, args: string[]): Promise<{ code: number; out: string }> {
  try {
    const { stdout, stderr } = await run(cmd, args, { timeout: 60_000 });
    return { code: 0, out: stdout + stderr };
  } catch (err: unknown) {
    const e = err as { code?: number; stdout?: string; stderr?: string };
    return { code: typeof e.code === 'number' ? e.code : -1, out: `${e.stdout ?? ''}${e.stderr ?? ''}` };
  }
}

const instanceRows = async (sop: string) =>
  (
    await db.pool.query<{ received_via: string; actor: string }>(
      'SELECT received_via, actor FROM instances WHERE sop_instance_uid = $1',
      [sop],
    )
  ).rows;

const tlsRejections = async () =>
  (
    await db.pool.query<{ id: string; source: string; detail: { transport?: string; tlsError?: string } }>(
      `SELECT id, source, detail FROM audit_events WHERE kind = 'association-rejected' ORDER BY id`,
    )
  ).rows.filter((r) => r.detail.transport === 'tls');

/** DCMTK storescp with TLS on a free port; resolves once it accepts TCP connections. */
async function storescpTls(dir: string, key: string, cert: string): Promise<number> {
  const port = await freePort();
  const proc = spawn(
    'storescp',
    ['-aet', 'STORESCP', '-od', dir, '+tls', pem(key), pem(cert), '-pw', '+cf', pem('ca.pem'), String(port)],
    { stdio: 'ignore' },
  );
  children.push(proc);
  await waitFor('storescp to listen', async () => {
    if (proc.exitCode !== null) throw new Error(`storescp exited ${proc.exitCode}`);
    return new Promise<true | undefined>((resolve) => {
      const s = net.connect(port, '127.0.0.1');
      s.once('connect', () => {
        s.destroy();
        resolve(true);
      });
      s.once('error', () => resolve(undefined));
    });
  });
  return port;
}

beforeAll(async () => {
  db = await testDatabase();
  work = mkdtempSync(path.join(tmpdir(), 'radscribe-dimse-tls-'));
  pki = path.join(work, 'pki');
  mkdirSync(pki);
  makeDicomPki(pki);
  const tmpDir = path.join(work, 'tmp');
  mkdirSync(tmpDir);
  scp = new StorageScp({
    listener: {
      aeTitle: AET,
      port: 0,
      host: '127.0.0.1',
      allowedCallingAeTitles: ['STORESCU', 'ECHOSCU', 'RADSCRIBE'],
      tls: {
        certFile: pem('server.pem'),
        keyFile: pem('server.key'),
        caFile: pem('ca.pem'),
        requireClientCert: true,
        minVersion: 'TLSv1.2',
      },
    },
    sink: new InstanceStore({ pool: db.pool, storageDir: path.join(work, 'instances') }),
    tmpDir,
    pool: db.pool,
    refusals: new AuditRecorder(db.pool),
    timeouts: { artimMs: 3_000, idleMs: 5_000 },
  });
  await scp.start();
});
afterAll(async () => {
  await scp?.close();
  for (const c of children) c.kill();
  await db?.close();
  rmSync(work, { recursive: true, force: true });
});

const dcmtkTls = (key: string, cert: string, ca = 'ca.pem') => ['+tls', pem(key), pem(cert), '-pw', '+cf', pem(ca)];

describe(`DICOM TLS listener against DCMTK (${backendName()})`, () => {
  it('echoscu and storescu over TLS with a certificate from the trusted CA: echo answered, instance stored', async () => {
    expect(scp.tls).toBe(true);
    const e = await dcmtk('echoscu', [
      ...dcmtkTls('client.key', 'client.pem'),
      '-aet',
      'ECHOSCU',
      '-aec',
      AET,
      '127.0.0.1',
      String(scp.port),
    ]);
    expect(e).toMatchObject({ code: 0 });
    const s = await dcmtk('storescu', [
      ...dcmtkTls('client.key', 'client.pem'),
      '-aet',
      'STORESCU',
      '-aec',
      AET,
      '127.0.0.1',
      String(scp.port),
      GOOD_FILE,
    ]);
    expect(s.out).not.toMatch(/E:/);
    expect(s.code).toBe(0);
    expect(await instanceRows(sopOf(GOOD_FILE))).toEqual([{ received_via: 'c-store', actor: 'STORESCU' }]);
    expect(await tlsRejections()).toEqual([]);
  });

  // PS3.15 B.9 (BCP 195), B.10 (Non-downgrading BCP 195, DCMTK's default) and B.11 (Extended
  // BCP 195): each profile's suite list meets ours.
  it.each([
    ['+px', 'BCP 195'],
    ['+py', 'Non-downgrading BCP 195'],
    ['+pz', 'Extended BCP 195'],
  ])('echoscu %s (%s profile) is answered', async (profile) => {
    const e = await dcmtk('echoscu', [
      ...dcmtkTls('client.key', 'client.pem'),
      profile,
      '-aet',
      'ECHOSCU',
      '-aec',
      AET,
      '127.0.0.1',
      String(scp.port),
    ]);
    expect(e).toMatchObject({ code: 0 });
  });

  it('TLS with a wrong certificate is refused: a client certificate from another CA gets no association, nothing stored, audited', async () => {
    const s = await dcmtk('storescu', [
      ...dcmtkTls('rogue-client.key', 'rogue-client.pem'),
      '-aet',
      'STORESCU',
      '-aec',
      AET,
      '127.0.0.1',
      String(scp.port),
      ROGUE_FILE,
    ]);
    // DCMTK sees only the connection go: "Peer aborted Association (or never connected)".
    expect(s.code).not.toBe(0);
    expect(await instanceRows(sopOf(ROGUE_FILE))).toEqual([]);
    const audited = await waitFor('TLS refusal audit', async () => {
      const rows = await tlsRejections();
      return rows.length >= 1 ? rows : undefined;
    });
    expect(audited[0]).toMatchObject({ source: '127.0.0.1', detail: { transport: 'tls' } });
    // OpenSSL's reason for a chain it cannot verify: the client certificate's issuer is unknown.
    expect(audited[0]?.detail.tlsError).toMatch(/^UNABLE_TO_(VERIFY_LEAF_SIGNATURE|GET_ISSUER_CERT)/);
    expect((await verifyAuditChain(db.pool)).ok).toBe(true);
  });

  it('a client without any certificate is refused (requireClientCert), and so is one that does not trust our CA', async () => {
    const before = (await tlsRejections()).length;
    // Our own SCU with the CA but no certificate of its own.
    const noCert = await echo(
      { host: '127.0.0.1', port: scp.port, calledAeTitle: AET },
      { tls: { caFile: pem('ca.pem') }, timeoutMs: 5_000 },
    );
    expect(noCert.ok).toBe(false);
    const noCertAudit = await waitFor('second TLS refusal audit', async () => (await tlsRejections())[before]);
    expect(noCertAudit.detail.tlsError).toBe('NO_PEER_CERTIFICATE');

    // storescu that trusts only the rogue CA refuses our server certificate itself; its alert
    // (unknown CA) fails the handshake on our side too, and is audited.
    const beforeAlert = (await tlsRejections()).length;
    const s = await dcmtk('storescu', [
      ...dcmtkTls('client.key', 'client.pem', 'rogue-ca.pem'),
      '-aet',
      'STORESCU',
      '-aec',
      AET,
      '127.0.0.1',
      String(scp.port),
      ROGUE_FILE,
    ]);
    expect(s.code).not.toBe(0);
    expect(await instanceRows(sopOf(ROGUE_FILE))).toEqual([]);
    const alert = await waitFor('peer alert audit', async () => (await tlsRejections())[beforeAlert]);
    expect(alert.detail.tlsError).toMatch(/^ERR_SSL_.*ALERT/);
  });

  it('a plain (non-TLS) DICOM connection to the TLS port is refused and audited; nothing stored; a bare TCP check is not audited', async () => {
    const before = (await tlsRejections()).length;
    // A monitor's TCP connect-and-close sends no byte: no handshake was attempted, no alert.
    await new Promise<void>((resolve) => {
      const probe = net.connect(scp.port, '127.0.0.1', () => probe.end());
      probe.on('error', () => undefined);
      probe.on('close', () => resolve());
    });
    await new Promise((r) => setTimeout(r, 300));
    expect((await tlsRejections()).length).toBe(before);
    const s = await dcmtk('storescu', ['-aet', 'STORESCU', '-aec', AET, '127.0.0.1', String(scp.port), PLAIN_FILE]);
    expect(s.code).not.toBe(0);
    expect(await instanceRows(sopOf(PLAIN_FILE))).toEqual([]);
    const plain = await waitFor('plain-connection audit', async () => (await tlsRejections())[before]);
    // storescu's A-ASSOCIATE-RQ read as a TLS record: not a handshake.
    expect(plain.detail.tlsError).toMatch(/^ERR_SSL_/);
  });

  it('offers BCP 195 only: TLS 1.1 and a CBC suite are refused at the handshake', async () => {
    const attempt = (o: tls.ConnectionOptions): Promise<string> =>
      new Promise((resolve) => {
        const s = tls.connect({
          host: '127.0.0.1',
          port: scp.port,
          ca: readFileSync(pem('ca.pem')),
          cert: readFileSync(pem('client.pem')),
          key: readFileSync(pem('client.key')),
          ...o,
        });
        s.once('secureConnect', () => {
          resolve(`${s.getProtocol()} ${s.getCipher().name}`);
          s.destroy();
        });
        s.once('error', (e: NodeJS.ErrnoException) => resolve(`error ${e.code}`));
      });
    expect(await attempt({ maxVersion: 'TLSv1.2' })).toMatch(/^TLSv1\.2 ECDHE-ECDSA-AES256-GCM-SHA384$/);
    expect(await attempt({})).toMatch(/^TLSv1\.3 TLS_AES_256_GCM_SHA384$/);
    // The server's alerts, not the client refusing itself (SECLEVEL=0 lets this client offer 1.1).
    expect(await attempt({ minVersion: 'TLSv1', maxVersion: 'TLSv1.1', ciphers: 'DEFAULT@SECLEVEL=0' })).toBe(
      'error ERR_SSL_TLSV1_ALERT_PROTOCOL_VERSION',
    );
    expect(await attempt({ maxVersion: 'TLSv1.2', ciphers: 'ECDHE-ECDSA-AES128-SHA256' })).toBe(
      'error ERR_SSL_SSL/TLS_ALERT_HANDSHAKE_FAILURE',
    );
    expect(DICOM_TLS12_CIPHERS.every((c) => /^ECDHE-(ECDSA|RSA)-(AES(128|256)-GCM|CHACHA20)/.test(c))).toBe(true);
  });
});

describe('RadScribe SCU over TLS against DCMTK storescp +tls', () => {
  const ct = sourceHeader('CT_small.dcm');
  const sr = buildDraftSr({ ...paramsFor([ct, sibling(ct, 1)], ['TLS-MARKER']), profile: 'report' });
  const outgoing = { studyInstanceUid: sr.studyInstanceUid, sopInstanceUid: sr.sopInstanceUid, part10: sr.part10 };
  const clientTls = { caFile: '', certFile: '', keyFile: '' };
  beforeAll(() => {
    clientTls.caFile = pem('ca.pem');
    clientTls.certFile = pem('client.pem');
    clientTls.keyFile = pem('client.key');
  });

  it('dimse destination with tls: the SR is stored by storescp; radscribe echo over TLS succeeds', async () => {
    const dir = path.join(work, 'storescp-good');
    mkdirSync(dir);
    const port = await storescpTls(dir, 'server.key', 'server.pem');
    const ok = await echo(
      { host: '127.0.0.1', port, calledAeTitle: 'STORESCP' },
      { tls: clientTls, timeoutMs: 10_000 },
    );
    expect(ok).toMatchObject({ ok: true, outcome: 'success', status: 0 });
    const dest = new DimseDestination('pacs-tls', {
      host: '127.0.0.1',
      port,
      calledAeTitle: 'STORESCP',
      callingAeTitle: 'RADSCRIBE',
      tls: { ...clientTls, serverName: 'pacs.test' },
    });
    expect(dest.location).toBe(`dicoms://STORESCP@127.0.0.1:${port}`);
    await expect(dest.send(outgoing)).resolves.toEqual({ location: dest.location });
    // storescp names files <modality prefix>.<SOP Instance UID> (SRc: Comprehensive SR).
    expect(readdirSync(dir)).toEqual([`SRc.${sr.sopInstanceUid}`]);
  });

  it('TLS with a wrong certificate is refused: a server certificate from another CA is a permanent (pacs-rejected) TLS refusal', async () => {
    const dir = path.join(work, 'storescp-rogue');
    mkdirSync(dir);
    const port = await storescpTls(dir, 'rogue-server.key', 'rogue-server.pem');
    const dest = new DimseDestination('pacs-rogue', {
      host: '127.0.0.1',
      port,
      calledAeTitle: 'STORESCP',
      callingAeTitle: 'RADSCRIBE',
      tls: clientTls,
    });
    const [r] = await dest.sendAll([outgoing]);
    expect(r?.ok).toBe(false);
    const error = (r as { error: RadScribeError }).error;
    expect(error).toBeInstanceOf(RadScribeError);
    expect(error.code).toBe(ErrorCode.PacsRejected);
    expect(isDimseAssociationError(error, AssociationFailure.TlsRefused)).toBe(true);
    expect(readdirSync(dir)).toEqual([]);
  });

  it('a server name that the certificate does not carry is refused; so is our SCU presenting a rogue client certificate', async () => {
    const dir = path.join(work, 'storescp-name');
    mkdirSync(dir);
    const port = await storescpTls(dir, 'server.key', 'server.pem');
    const wrongName = await echo(
      { host: '127.0.0.1', port, calledAeTitle: 'STORESCP' },
      { tls: { ...clientTls, serverName: 'other.test' }, timeoutMs: 10_000 },
    );
    expect(wrongName.ok).toBe(false);
    expect(wrongName.outcome).toMatch(/^TLS refused: .*ERR_TLS_CERT_ALTNAME_INVALID/);
    const dest = new DimseDestination('pacs', {
      host: '127.0.0.1',
      port,
      calledAeTitle: 'STORESCP',
      callingAeTitle: 'RADSCRIBE',
      tls: { caFile: pem('ca.pem'), certFile: pem('rogue-client.pem'), keyFile: pem('rogue-client.key') },
    });
    const [r] = await dest.sendAll([outgoing]);
    expect(r?.ok).toBe(false);
    expect((r as { error: RadScribeError }).error.code).toBe(ErrorCode.PacsRejected);
    expect(readdirSync(dir)).toEqual([]);
  });
});

describe('gateway from config: TLS listener in, TLS dimse destination out, radscribe echo over TLS', () => {
  const SAMPLE = path.join(__dirname, '../fixtures/sample-study/RG3_J2KR.dcm');
  const BIN = path.join(__dirname, '../../bin/radscribe');
  let t: TestGateway;
  let outDir: string;
  let outPort: number;
  beforeAll(async () => {
    outDir = path.join(work, 'storescp-gateway');
    mkdirSync(outDir);
    outPort = await storescpTls(outDir, 'server.key', 'server.pem');
    t = await startTestGateway(backends()[0] as Backend, {
      dimse: {
        listeners: [
          {
            aeTitle: 'RADSCRIBE',
            port: 0,
            host: '127.0.0.1',
            tls: { certFile: pem('server.pem'), keyFile: pem('server.key'), caFile: pem('ca.pem') },
          },
        ],
      },
      destinations: [
        {
          name: 'pacs-tls',
          type: 'dimse',
          host: '127.0.0.1',
          port: outPort,
          calledAeTitle: 'STORESCP',
          tls: { caFile: pem('ca.pem'), certFile: pem('client.pem'), keyFile: pem('client.key') },
        },
      ],
      defaultDestination: 'pacs-tls',
    });
  }, 60_000);
  afterAll(async () => {
    await t?.close();
  });

  it('storescu +tls in → described → SR exported over TLS to storescp; radscribe echo --tls-ca works, a wrong CA fails', async () => {
    const port = t.gw.dimseListeners[0]?.port as number;
    const s = await dcmtk('storescu', [
      ...dcmtkTls('client.key', 'client.pem'),
      '-aet',
      'MODALITY1',
      '-aec',
      'RADSCRIBE',
      '-xv',
      '127.0.0.1',
      String(port),
      SAMPLE,
    ]);
    expect(s.code).toBe(0);
    const study = parsePart10(readFileSync(SAMPLE)).dataset.StudyInstanceUID as string;
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
    expect(job).toMatchObject({ state: 'succeeded' });
    const audit = await t.gw.db.pool.query<{ detail: { location?: string }; sop_instance_uids: string[] }>(
      `SELECT detail, sop_instance_uids FROM audit_events WHERE kind = 'sr-exported' ORDER BY id`,
    );
    expect(audit.rows.map((r) => r.detail.location)).toEqual([`dicoms://STORESCP@127.0.0.1:${outPort}`]);
    expect(readdirSync(outDir)).toEqual([`SRc.${audit.rows[0]?.sop_instance_uids[0]}`]);

    // Asynchronous: the gateway answering the echo runs in this very process.
    const cli = async (extra: string[]): Promise<{ status: number; stdout: string }> => {
      try {
        const r = await run(BIN, ['echo', `127.0.0.1:${port}:RADSCRIBE`, '--aet', 'ECHOSCU', '--json', ...extra], {
          timeout: 60_000,
        });
        return { status: 0, stdout: r.stdout };
      } catch (err: unknown) {
        const e = err as { code?: number; stdout?: string };
        return { status: typeof e.code === 'number' ? e.code : -1, stdout: e.stdout ?? '' };
      }
    };
    const ok = await cli(['--tls-ca', pem('ca.pem'), '--tls-cert', pem('client.pem'), '--tls-key', pem('client.key')]);
    expect(ok.status).toBe(0);
    expect(JSON.parse(ok.stdout)).toMatchObject({ target: { tls: true }, ok: true, outcome: 'success' });
    const wrongCa = await cli([
      '--tls-ca',
      pem('rogue-ca.pem'),
      '--tls-cert',
      pem('client.pem'),
      '--tls-key',
      pem('client.key'),
    ]);
    expect(wrongCa.status).toBe(1);
    expect(JSON.parse(wrongCa.stdout)).toMatchObject({ ok: false, outcome: expect.stringMatching(/^TLS refused: /) });
    const halfPair = await cli(['--tls-ca', pem('ca.pem'), '--tls-cert', pem('client.pem')]);
    expect(halfPair.status).toBe(2);
  });
});
