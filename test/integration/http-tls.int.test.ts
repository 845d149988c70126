import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import https from 'node:https';
import { tmpdir } from 'node:os';
import path from 'node:path';
import tls from 'node:tls';
import { backends, startTestGateway, type TestGateway } from '../support/gateway.js';

/**
 * Issue 12, Access: HTTPS on the gateway (config http.tls), TLS 1.2 at least, optional client
 * certificates. Certificates made with the openssl binary (a CA, a server certificate for
 * 127.0.0.1, a client certificate, and a rogue self-signed one); a real TLS client (node:tls /
 * node:https) on loopback.
 */
function makePki(dir: string): void {
  const ssl = (...args: string[]) => execFileSync('openssl', args, { cwd: dir, stdio: 'pipe' });
  // A self-signed P-256 certificate (a CA, or a client nobody trusts).
  const selfSigned = (cn: string, name: string) =>
    ssl(
      'req',
      '-x509',
      '-newkey',
      'ec',
      '-pkeyopt',
      'ec_paramgen_curve:P-256',
      '-nodes',
      '-days',
      '2',
      '-subj',
      `/CN=${cn}`,
      '-keyout',
      `${name}.key`,
      '-out',
      `${name}.pem`,
    );
  selfSigned('RadScribe test CA', 'ca');
  writeFileSync(path.join(dir, 'server.ext'), 'subjectAltName=IP:127.0.0.1\n');
  for (const [name, cn] of [
    ['server', '127.0.0.1'],
    ['client', 'ward-scanner'],
  ] as const) {
    ssl(
      'req',
      '-newkey',
      'ec',
      '-pkeyopt',
      'ec_paramgen_curve:P-256',
      '-nodes',
      '-subj',
      `/CN=${cn}`,
      '-keyout',
      `${name}.key`,
      '-out',
      `${name}.csr`,
    );
    ssl(
      'x509',
      '-req',
      '-in',
      `${name}.csr`,
      '-CA',
      'ca.pem',
      '-CAkey',
      'ca.key',
      '-CAcreateserial',
      '-days',
      '2',
      ...(name === 'server' ? ['-extfile', 'server.ext'] : []),
      '-out',
      `${name}.pem`,
    );
  }
  // A client certificate with the same subject from a CA the gateway does not trust.
  selfSigned('ward-scanner', 'rogue');
}

describe.each(backends())('HTTPS on %s', (backend) => {
  let dir: string;
  let t: TestGateway;
  const file = (f: string) => readFileSync(path.join(dir, f));
  beforeAll(async () => {
    dir = mkdtempSync(path.join(tmpdir(), 'rs-tls-'));
    makePki(dir);
    t = await startTestGateway(backend, {
      http: {
        host: '127.0.0.1',
        port: 0,
        tls: {
          certFile: path.join(dir, 'server.pem'),
          keyFile: path.join(dir, 'server.key'),
          clientCaFile: path.join(dir, 'ca.pem'),
          requireClientCert: true,
        },
      },
    });
  });
  afterAll(async () => {
    await t?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  const port = () => Number(new URL(t.gw.baseUrl).port);
  function get(p: string, o: https.RequestOptions): Promise<{ status: number; protocol: string | null }> {
    return new Promise((resolve, reject) => {
      const req = https.get(
        { host: '127.0.0.1', port: port(), path: p, ca: file('ca.pem'), agent: false, ...o },
        (res) => {
          res.resume();
          resolve({ status: res.statusCode ?? 0, protocol: (res.socket as tls.TLSSocket).getProtocol?.() ?? null });
        },
      );
      req.on('error', reject);
    });
  }

  it('serves HTTPS with a client certificate, still asking for a token', async () => {
    expect(t.gw.baseUrl).toMatch(/^https:\/\/127\.0\.0\.1:\d+$/);
    const client = { cert: file('client.pem'), key: file('client.key') };
    const health = await get('/health', client);
    expect(health.status).toBe(200);
    expect(['TLSv1.2', 'TLSv1.3']).toContain(health.protocol);
    expect((await get('/api/jobs', client)).status).toBe(401);
    expect((await get('/api/jobs', { ...client, headers: t.auth('operator') })).status).toBe(200);
  });

  it('refuses a client without a certificate, and TLS below 1.2, at the handshake', async () => {
    await expect(get('/health', {})).rejects.toThrow();
    const old = await new Promise<string>((resolve) => {
      const s = tls.connect({
        host: '127.0.0.1',
        port: port(),
        ca: file('ca.pem'),
        cert: file('client.pem'),
        key: file('client.key'),
        minVersion: 'TLSv1',
        maxVersion: 'TLSv1.1',
      });
      s.once('secureConnect', () => {
        resolve(`connected with ${s.getProtocol()}`);
        s.destroy();
      });
      s.once('error', (e: NodeJS.ErrnoException) => resolve(e.code ?? e.message));
    });
    expect(old).not.toMatch(/^connected/);
  });

  it('refuses a client certificate from a CA it does not trust (same subject, self-signed)', async () => {
    const rogue = { cert: file('rogue.pem'), key: file('rogue.key') };
    await expect(get('/health', rogue)).rejects.toThrow();
    // The same request with the trusted client certificate gets through: the refusal is the certificate.
    expect((await get('/health', { cert: file('client.pem'), key: file('client.key') })).status).toBe(200);
  });
});
