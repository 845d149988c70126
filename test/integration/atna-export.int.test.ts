import { type ChildProcess, execFileSync, spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { freePort } from '../../bench/support/free-port.js';
import { AuditExporter } from '../../src/audit/atna/audit-exporter.js';
import { frameOctetCounted, SyslogTlsConnection } from '../../src/audit/atna/syslog-tls.js';
import { AuditEventKind, EventOutcome } from '../../src/audit/audit-codes.js';
import { recordAudit } from '../../src/audit/audit-log.js';
import { Gateway } from '../../src/gateway.js';
import { backendName, type TestDatabase, testDatabase } from '../support/db.js';
import { startTestGateway, testGatewaySetup, waitFor } from '../support/gateway.js';

jest.setTimeout(180_000);

const RSYSLOGD = '/usr/sbin/rsyslogd';
/** The normative PS3.15 A.5.1.1 schema (RELAX NG Compact text, converted by trang). */
const SCHEMA = path.join(__dirname, '..', 'fixtures', 'atna', 'dicom-audit-message.rng');
const BOM = '\ufeff';

/** A CA and a server certificate for localhost / 127.0.0.1, made with openssl. */
function makePki(dir: string): void {
  const o = (args: string[]) => execFileSync('openssl', args, { cwd: dir, stdio: 'pipe' });
  o([
    'req',
    '-x509',
    '-newkey',
    'rsa:2048',
    '-nodes',
    '-keyout',
    'ca.key',
    '-out',
    'ca.pem',
    '-days',
    '2',
    '-subj',
    '/CN=RadScribe test ARR CA',
  ]);
  o(['req', '-newkey', 'rsa:2048', '-nodes', '-keyout', 'server.key', '-out', 'server.csr', '-subj', '/CN=localhost']);
  writeFileSync(path.join(dir, 'ext.cnf'), 'subjectAltName=DNS:localhost,IP:127.0.0.1\n');
  o([
    'x509',
    '-req',
    '-in',
    'server.csr',
    '-CA',
    'ca.pem',
    '-CAkey',
    'ca.key',
    '-CAcreateserial',
    '-out',
    'server.pem',
    '-days',
    '2',
    '-extfile',
    'ext.cnf',
  ]);
}

/**
 * A client certificate for the exporter, issued by the CA in `dir` (ca.pem/ca.key) with the name
 * rsyslog's x509/name mode checks (subjectAltName dNSName), into `<name>.pem` / `<name>.key`.
 */
function makeClientCert(dir: string, name: string, dnsName: string): void {
  const o = (args: string[]) => execFileSync('openssl', args, { cwd: dir, stdio: 'pipe' });
  o([
    'req',
    '-newkey',
    'rsa:2048',
    '-nodes',
    '-keyout',
    `${name}.key`,
    '-out',
    `${name}.csr`,
    '-subj',
    `/CN=${dnsName}`,
  ]);
  writeFileSync(path.join(dir, `${name}.cnf`), `subjectAltName=DNS:${dnsName}\nextendedKeyUsage=clientAuth\n`);
  o([
    'x509',
    '-req',
    '-in',
    `${name}.csr`,
    '-CA',
    'ca.pem',
    '-CAkey',
    'ca.key',
    '-CAcreateserial',
    '-out',
    `${name}.pem`,
    '-days',
    '2',
    '-extfile',
    `${name}.cnf`,
  ]);
}

function canConnect(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const c = net.connect(port, '127.0.0.1');
    c.once('connect', () => {
      c.destroy();
      resolve(true);
    });
    c.once('error', () => resolve(false));
  });
}

/** A real rsyslog (imtcp + lmnsd_gtls, RFC 5425 TLS) writing each message's MSG as one line. */
class Rsyslog {
  readonly out: string;
  readonly meta: string;
  readonly conf: string;
  #proc: ChildProcess | undefined;
  /**
   * `clientAuth`: rsyslog's gtls StreamDriver.Authmode. "anon" asks for no client certificate;
   * "x509/name" requires one that chains to DefaultNetstreamDriverCAFile and names a PermittedPeer.
   */
  constructor(
    readonly dir: string,
    readonly port: number,
    clientAuth: { mode: 'anon' } | { mode: 'x509/name'; permittedPeer: string } = { mode: 'anon' },
  ) {
    this.out = path.join(dir, 'messages.log');
    this.meta = path.join(dir, 'meta.log');
    this.conf = path.join(dir, 'rsyslog.conf');
    mkdirSync(path.join(dir, 'work'), { recursive: true });
    writeFileSync(
      this.conf,
      `global(
  workDirectory="${dir}/work"
  maxMessageSize="64k"
  DefaultNetstreamDriver="gtls"
  DefaultNetstreamDriverCAFile="${dir}/ca.pem"
  DefaultNetstreamDriverCertFile="${dir}/server.pem"
  DefaultNetstreamDriverKeyFile="${dir}/server.key"
)
module(load="imtcp" StreamDriver.Name="gtls" StreamDriver.Mode="1" StreamDriver.Authmode="${clientAuth.mode}"${
        clientAuth.mode === 'anon' ? '' : ` PermittedPeer=["${clientAuth.permittedPeer}"]`
      })
input(type="imtcp" port="${port}" address="127.0.0.1")
template(name="msgonly" type="string" string="%msg%\\n")
template(name="meta" type="string" string="%syslogfacility% %syslogseverity% %app-name% %msgid% %structured-data%\\n")
action(type="omfile" file="${this.out}" template="msgonly")
action(type="omfile" file="${this.meta}" template="meta")
`,
    );
  }
  async start(): Promise<void> {
    const p = spawn(RSYSLOGD, ['-n', '-f', this.conf, '-i', path.join(this.dir, 'rsyslogd.pid')], {
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    p.stderr?.on('data', () => undefined);
    this.#proc = p;
    await waitFor('rsyslog listening', async () => ((await canConnect(this.port)) ? true : undefined), 15_000);
  }
  async stop(): Promise<void> {
    const p = this.#proc;
    this.#proc = undefined;
    if (!p || p.exitCode !== null) return;
    const exited = new Promise((r) => p.once('exit', r));
    p.kill('SIGTERM');
    await exited;
  }
  /** The messages received so far, BOM stripped (RFC 5424 §6.4 BOM is part of MSG). */
  lines(): string[] {
    if (!existsSync(this.out)) return [];
    return readFileSync(this.out, 'utf8')
      .split('\n')
      .filter((l) => l !== '')
      .map((l) => (l.startsWith(BOM) ? l.slice(1) : l));
  }
  metaLines(): string[] {
    return existsSync(this.meta)
      ? readFileSync(this.meta, 'utf8')
          .split('\n')
          .filter((l) => l !== '')
      : [];
  }
}

const hasRsyslog = existsSync(RSYSLOGD) && spawnSync('openssl', ['version']).status === 0;
const hasXmllint = spawnSync('xmllint', ['--version']).status === 0;
const describeIf = hasRsyslog ? describe : describe.skip;

/** First ActiveParticipant's UserID of each message (the requestor), parsed by xmllint. */
function requestors(dir: string, lines: readonly string[]): string[] {
  return lines.map((l) => {
    const r = spawnSync('xmllint', ['--xpath', 'string(/AuditMessage/ActiveParticipant[1]/@UserID)', '-'], {
      input: l,
      encoding: 'utf8',
    });
    if (r.status !== 0) throw new Error(`not well-formed (${dir}): ${r.stderr}`);
    return r.stdout.replace(/\n$/, '');
  });
}

/** Every message valid against the normative A.5.1 schema (one xmllint run over all files). */
function assertSchemaValid(dir: string, lines: readonly string[]): void {
  const vdir = mkdtempSync(path.join(dir, 'v-'));
  const files = lines.map((l, i) => {
    const f = path.join(vdir, `${i}.xml`);
    writeFileSync(f, l);
    return f;
  });
  const r = spawnSync('xmllint', ['--noout', '--relaxng', SCHEMA, ...files], { encoding: 'utf8' });
  expect(r.stderr.split('\n').filter((x) => x !== '' && !x.endsWith(' validates'))).toEqual([]);
  expect(r.status).toBe(0);
  rmSync(vdir, { recursive: true, force: true });
}

async function trailActors(db: TestDatabase): Promise<string[]> {
  const { rows } = await db.pool.query<{ actor: string }>('SELECT actor FROM audit_events ORDER BY id');
  return rows.map((r) => r.actor);
}

async function record(db: TestDatabase, from: number, n: number): Promise<void> {
  for (let i = from; i < from + n; i++) {
    if (i === 7) {
      // An exported SR: its SOP Class comes from the event (SRs have no instances row).
      await recordAudit(db.pool, {
        kind: AuditEventKind.SrExported,
        actor: 'radscribe',
        destination: 'pacs.example.org:104',
        studyInstanceUid: `1.2.826.0.1.3680043.8.498.${i}`,
        sopInstanceUids: ['1.2.826.0.1.3680043.8.498.7.1'],
        detail: { sopClassUid: '1.2.840.10008.5.1.4.1.1.88.33' },
      });
      continue;
    }
    await recordAudit(db.pool, {
      kind: i % 5 === 0 ? AuditEventKind.InstanceRefused : AuditEventKind.RemoteQuery,
      outcome: i % 5 === 0 ? EventOutcome.SeriousFailure : EventOutcome.Success,
      actor: i === 3 ? `user-3 <&"'>` : `user-${i}`,
      source: '10.0.0.7',
      studyInstanceUid: `1.2.826.0.1.3680043.8.498.${i}`,
    });
  }
}

/**
 * [REQ-AUD-ATNA] Issue 12 "Export to the hospital (IHE ATNA)": the trail goes out as DICOM audit
 * messages over RFC 5425 syslog-TLS to a real rsyslog, in id order, and an rsyslog that is down
 * for a while (with the exporter restarted meanwhile) gets the whole backlog, in order, no gaps.
 */
describeIf(`ATNA export to rsyslog over TLS (${backendName()})`, () => {
  let db: TestDatabase;
  let dir: string;
  let rsyslog: Rsyslog;
  let exporter: AuditExporter | undefined;
  let syslog: { host: string; port: number; caFile: string; serverName: string };

  beforeEach(async () => {
    dir = mkdtempSync(path.join(tmpdir(), 'radscribe-atna-'));
    makePki(dir);
    const port = await freePort();
    rsyslog = new Rsyslog(dir, port);
    syslog = { host: '127.0.0.1', port, caFile: path.join(dir, 'ca.pem'), serverName: 'localhost' };
    db = await testDatabase({ poolSize: 2 });
  });
  afterEach(async () => {
    await exporter?.stop();
    exporter = undefined;
    await rsyslog.stop();
    await db.close();
    rmSync(dir, { recursive: true, force: true });
  });

  const newExporter = () =>
    new AuditExporter({
      pool: db.pool,
      syslog,
      auditSourceId: 'radscribe-test',
      pollIntervalMs: 50,
      backoffBaseMs: 50,
      backoffMaxMs: 400,
    });

  it('delivers in order, resumes after the repository was down and the exporter restarted', async () => {
    await rsyslog.start();
    await record(db, 0, 20);
    exporter = newExporter();
    exporter.start();
    await waitFor('20 messages', async () => (rsyslog.lines().length >= 20 ? true : undefined), 30_000);
    const first = rsyslog.lines();
    expect(first).toHaveLength(20);
    if (hasXmllint) {
      expect(requestors(dir, first)).toEqual(await trailActors(db));
      assertSchemaValid(dir, first);
    }
    expect(first[3]).toContain('UserID="user-3 &lt;&amp;&quot;&apos;&gt;"');
    // The SR's SOP instance under its SOP Class in the study participant object (PS3.15 A.5.1).
    expect(first[7]).toContain(
      '<ParticipantObjectDescription><SOPClass UID="1.2.840.10008.5.1.4.1.1.88.33" NumberOfInstances="1"><Instance UID="1.2.826.0.1.3680043.8.498.7.1"/></SOPClass></ParticipantObjectDescription>',
    );
    // rsyslog parsed RFC 5424: facility 10 (authpriv), severity from the outcome, IHE MSGID, no SD.
    const meta = rsyslog.metaLines();
    expect(meta[0]).toBe('10 3 radscribe IHE+RFC-3881 -');
    expect(meta[1]).toBe('10 5 radscribe IHE+RFC-3881 -');
    expect(exporter.cursor).toBe(20);

    // The repository goes down; events keep being recorded; the gateway restarts meanwhile.
    await rsyslog.stop();
    await record(db, 20, 15);
    await waitFor('a failed delivery', async () => ((exporter as AuditExporter).failures > 0 ? true : undefined));
    await exporter.stop();
    const { rows } = await db.pool.query<{ last_id: string }>('SELECT last_id FROM audit_export_cursor');
    expect(rows.map((r) => Number(r.last_id))).toEqual([20]);
    exporter = newExporter();
    exporter.start();
    await record(db, 35, 15);
    await new Promise((r) => setTimeout(r, 500));
    expect(rsyslog.lines()).toHaveLength(20);

    const restarted = Date.now();
    await rsyslog.start();
    await waitFor('the backlog', async () => (rsyslog.lines().length >= 50 ? true : undefined), 60_000);
    const backlogMs = Date.now() - restarted;
    await new Promise((r) => setTimeout(r, 300));
    const all = rsyslog.lines();
    expect(all).toHaveLength(50);
    if (hasXmllint) {
      expect(requestors(dir, all)).toEqual(await trailActors(db));
      assertSchemaValid(dir, all.slice(20));
    }
    expect(exporter.cursor).toBe(50);
    process.stdout.write(`ATNA backlog of 30 delivered ${backlogMs} ms after rsyslog restarted (${backendName()})\n`);
  });

  it('measures throughput of 1000 events to rsyslog', async () => {
    await rsyslog.start();
    await record(db, 0, 1000);
    exporter = newExporter();
    const t0 = Date.now();
    exporter.start();
    await waitFor('1000 messages', async () => (rsyslog.lines().length >= 1000 ? true : undefined), 120_000);
    const ms = Date.now() - t0;
    const lines = rsyslog.lines();
    expect(lines).toHaveLength(1000);
    if (hasXmllint) expect(requestors(dir, lines)).toEqual(await trailActors(db));
    process.stdout.write(
      `ATNA export: 1000 events in ${ms} ms = ${Math.round(1_000_000 / ms)} events/s (${backendName()})\n`,
    );
  });

  it('refuses a repository whose certificate does not carry the configured name', async () => {
    await rsyslog.start();
    await expect(SyslogTlsConnection.connect({ ...syslog, serverName: 'arr.wrong.example' })).rejects.toThrow(
      /altnames|Hostname|does not match/i,
    );
    const other = path.join(dir, 'other');
    mkdirSync(other);
    makePki(other);
    await expect(SyslogTlsConnection.connect({ ...syslog, caFile: path.join(other, 'ca.pem') })).rejects.toThrow(
      /self.signed|unable to verify|certificate/i,
    );
  });

  it('the gateway exports its own trail: application-start and, on stop, application-stop', async () => {
    await rsyslog.start();
    const t = await startTestGateway(backendName(), { audit: { export: { syslog } } });
    try {
      await waitFor(
        'application-start at the repository',
        async () => (rsyslog.lines().some((l) => l.includes('csd-code="110120"')) ? true : undefined),
        30_000,
      );
    } finally {
      await t.close();
    }
    // Closed after application-stop is written (service order), draining it out first.
    const lines = rsyslog.lines();
    expect(lines.some((l) => l.includes('csd-code="110121"'))).toBe(true);
    expect(lines.findIndex((l) => l.includes('csd-code="110120"'))).toBeLessThan(
      lines.findIndex((l) => l.includes('csd-code="110121"')),
    );
  });

  it('an unreadable CA file fails the gateway start, with the key and the path', async () => {
    const missing = path.join(dir, 'no-such-ca.pem');
    const setup = await testGatewaySetup(backendName(), {
      audit: { export: { syslog: { ...syslog, caFile: missing } } },
    });
    try {
      await expect(Gateway.start(setup.config, { actor: 'test' })).rejects.toThrow(
        `audit.export.syslog.caFile: cannot read ${missing}`,
      );
    } finally {
      await setup.dispose();
    }
  });
});

/**
 * [REQ-AUD-ATNA] Mutual TLS (IHE ATNA node authentication): an rsyslog that requires a client
 * certificate (gtls x509/name with a PermittedPeer). rsyslog checks the certificate only after the
 * TLS handshake has completed on the client's side and then drops the connection, so a refused
 * exporter sees a "successful" connect and write; the exporter waits for that refusal before its
 * first frame (SyslogTlsOptions.acceptWindowMs), which is what keeps the events in the trail.
 */
describeIf(`ATNA export to rsyslog with mutual TLS (${backendName()})`, () => {
  const PEER = 'radscribe.audit-client.test';
  let db: TestDatabase;
  let dir: string;
  let rsyslog: Rsyslog;
  let exporter: AuditExporter | undefined;
  let syslog: { host: string; port: number; caFile: string; serverName: string };

  beforeEach(async () => {
    dir = mkdtempSync(path.join(tmpdir(), 'radscribe-atna-mtls-'));
    makePki(dir);
    makeClientCert(dir, 'client', PEER);
    // Another CA's certificate with the same name: the name matches, the chain does not.
    const other = path.join(dir, 'other');
    mkdirSync(other);
    makePki(other);
    makeClientCert(other, 'client', PEER);
    const port = await freePort();
    rsyslog = new Rsyslog(dir, port, { mode: 'x509/name', permittedPeer: PEER });
    syslog = { host: '127.0.0.1', port, caFile: path.join(dir, 'ca.pem'), serverName: 'localhost' };
    db = await testDatabase({ poolSize: 2 });
  });
  afterEach(async () => {
    await exporter?.stop();
    exporter = undefined;
    await rsyslog.stop();
    await db.close();
    rmSync(dir, { recursive: true, force: true });
  });

  const startExporter = (client: { certFile: string; keyFile: string } | undefined) => {
    const e = new AuditExporter({
      pool: db.pool,
      syslog: { ...syslog, ...client },
      auditSourceId: 'radscribe-test',
      pollIntervalMs: 50,
      backoffBaseMs: 50,
      backoffMaxMs: 200,
    });
    e.start();
    return e;
  };
  const cursor = async () =>
    (await db.pool.query<{ last_id: string }>('SELECT last_id FROM audit_export_cursor')).rows.map((r) =>
      Number(r.last_id),
    );

  it('refuses no certificate and another CA’s, loses nothing, then delivers in order exactly once', async () => {
    await rsyslog.start();
    await record(db, 0, 10);

    // 1. No client certificate: rsyslog drops every connection; nothing may count as sent.
    exporter = startExporter(undefined);
    await waitFor('3 refused connections', async () => ((exporter as AuditExporter).failures >= 3 ? true : undefined));
    await record(db, 10, 5);
    await exporter.stop();
    expect(exporter.sent).toBe(0);
    expect(await cursor()).toEqual([0]);
    expect(rsyslog.lines()).toEqual([]);

    // 2. A certificate with the permitted name from another CA: refused the same way.
    exporter = startExporter({
      certFile: path.join(dir, 'other', 'client.pem'),
      keyFile: path.join(dir, 'other', 'client.key'),
    });
    await waitFor('3 refused connections', async () => ((exporter as AuditExporter).failures >= 3 ? true : undefined));
    await exporter.stop();
    expect(exporter.sent).toBe(0);
    expect(await cursor()).toEqual([0]);
    expect(rsyslog.lines()).toEqual([]);

    // 3. The configuration fixed (our CA's client certificate): the backlog, in order, once.
    exporter = startExporter({ certFile: path.join(dir, 'client.pem'), keyFile: path.join(dir, 'client.key') });
    await waitFor('15 messages', async () => (rsyslog.lines().length >= 15 ? true : undefined), 30_000);
    await record(db, 15, 5);
    await waitFor('20 messages', async () => (rsyslog.lines().length >= 20 ? true : undefined), 30_000);
    await new Promise((r) => setTimeout(r, 300));
    const lines = rsyslog.lines();
    expect(lines).toHaveLength(20);
    expect(exporter.cursor).toBe(20);
    expect(await cursor()).toEqual([20]);
    if (hasXmllint) {
      expect(requestors(dir, lines)).toEqual(await trailActors(db));
      assertSchemaValid(dir, lines);
    }
  });

  it('without the wait for a refusal, frames written right after the handshake would be lost', async () => {
    // The check that the accept window is what saves the events above: with no window, a refused
    // connection takes the first frames (their write callbacks fire) before rsyslog drops it.
    // Whether the write callback beats rsyslog's reset is a race, so up to 5 tries: at least one
    // write must "succeed" on a connection that was refused.
    await rsyslog.start();
    let lookedDelivered = 0;
    for (let i = 0; i < 5 && lookedDelivered === 0; i++) {
      const conn = await SyslogTlsConnection.connect({ ...syslog, acceptWindowMs: 0 });
      const msg = Buffer.from(`<85>1 2026-12-04T00:00:00Z h radscribe - IHE+RFC-3881 - refused-${i}`);
      if (
        await conn.send(frameOctetCounted(msg)).then(
          () => true,
          () => false,
        )
      )
        lookedDelivered++;
      await waitFor('rsyslog drops the connection', async () => (conn.broken ? true : undefined), 5000);
      await conn.close();
    }
    expect(lookedDelivered).toBe(1);
    await new Promise((r) => setTimeout(r, 300));
    expect(rsyslog.lines()).toEqual([]);
    // With the default window the same refusal is seen at connect, before anything is written.
    await expect(SyslogTlsConnection.connect(syslog)).rejects.toThrow(/right after the TLS handshake/);
    const ok = await SyslogTlsConnection.connect({
      ...syslog,
      certFile: path.join(dir, 'client.pem'),
      keyFile: path.join(dir, 'client.key'),
    });
    expect(ok.broken).toBe(false);
    await ok.close();
  });
});
