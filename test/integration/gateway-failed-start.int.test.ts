import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { openDatabase } from '../../src/db/pool.js';
import { startTestServer, type TestHttpServer } from '../support/http.js';

/**
 * [REQ-LIFE-04] (issue 9, "a failed start looks like a successful one") The real executable,
 * `bin/radscribe serve`, in a process of its own, with a QIDO poller configured against a fake PACS:
 * when the HTTP port is taken it exits non-zero with the cause on stderr, the poller never queries
 * the PACS, and the audit trail holds no application-start. The same configuration on a free port is
 * the control: it does poll, records application-start, and exits 0 on SIGTERM.
 * (REQ-LIFE-01..03 check the same in-process, through `Gateway` and `main()`.)
 */
jest.setTimeout(300_000);

const ROOT = path.resolve(__dirname, '../..');
const BIN = path.join(ROOT, 'bin/radscribe');

interface Run {
  readonly code: number | null;
  readonly stderr: string;
}

function serve(configFile: string): { done: Promise<Run>; stop(): void; stderr(): string } {
  const env = { ...process.env };
  delete env.DATABASE_URL;
  delete env.RADSCRIBE_DATABASE_URL;
  const proc = spawn(BIN, ['serve', '--config', configFile], { cwd: ROOT, env, stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  let stopped = false;
  const stop = (): void => {
    if (!stopped && proc.exitCode === null) proc.kill('SIGTERM');
    stopped = true;
  };
  proc.stderr.on('data', (d: Buffer) => {
    stderr += d.toString();
  });
  const done = new Promise<Run>((resolve) => proc.once('exit', (code) => resolve({ code, stderr })));
  return { done, stop, stderr: () => stderr };
}

async function auditKinds(dataDir: string): Promise<Record<string, number>> {
  const db = await openDatabase({ dataDir, poolSize: 1 });
  try {
    const r = await db.pool.query<{ kind: string; n: number }>(
      'SELECT kind, count(*)::int AS n FROM audit_events GROUP BY kind',
    );
    return Object.fromEntries(r.rows.map((x) => [x.kind, x.n]));
  } finally {
    await db.close();
  }
}

describe('bin/radscribe serve as a process', () => {
  let pacs: TestHttpServer;
  let qido = 0;
  let work: string;
  beforeAll(async () => {
    work = mkdtempSync(path.join(tmpdir(), 'rs-failed-start-'));
    pacs = await startTestServer((app) =>
      app.get('/dicom-web/studies', (_req, res) => {
        qido++;
        res.status(200).type('application/dicom+json').send('[]');
      }),
    );
  });
  afterAll(async () => {
    await pacs?.close();
    rmSync(work, { recursive: true, force: true });
  });

  function config(name: string, port: number): { file: string; dataDir: string } {
    const dataDir = path.join(work, name);
    const file = path.join(work, `${name}.yaml`);
    // JSON is YAML 1.2.
    writeFileSync(
      file,
      JSON.stringify({
        dataDir,
        http: { host: '127.0.0.1', port },
        remoteNodes: [
          { name: 'fake-pacs', baseUrl: `${pacs.url}/dicom-web`, poll: { enabled: true, intervalMs: 500 } },
        ],
      }),
    );
    return { file, dataDir };
  }

  it('[REQ-LIFE-04] port in use: exit 1 with EADDRINUSE on stderr, no poll, no application-start', async () => {
    const blocker = net.createServer();
    await new Promise<void>((r) => blocker.listen(0, '127.0.0.1', r));
    const { port } = blocker.address() as net.AddressInfo;
    try {
      const { file, dataDir } = config('blocked', port);
      const before = qido;
      const run = await serve(file).done;
      expect(run.code).toBe(1);
      expect(run.stderr).toMatch(new RegExp(`radscribe: http: cannot listen on 127\\.0\\.0\\.1:${port}: EADDRINUSE`));
      expect(run.stderr).not.toMatch(/"message":"gateway started"/);
      // Give a poller that might have escaped the shutdown time to query.
      await new Promise((r) => setTimeout(r, 1500));
      expect(qido).toBe(before);
      const audit = await auditKinds(dataDir);
      expect(audit['application-start']).toBeUndefined();
      expect(audit['application-stop']).toBeUndefined();
      // Two config changes, both committed before HTTP tried to listen: the configuration file as a whole,
      // and the remote node 'fake-pacs' seeded from it into remote_nodes (migration 0022, src/config/ae-store.ts).
      expect(audit['config-change']).toBe(2);
    } finally {
      await new Promise<void>((r) => blocker.close(() => r()));
    }
  });

  it('control: the same configuration on a free port polls, audits application-start, exits 0 on SIGTERM', async () => {
    const free = net.createServer();
    await new Promise<void>((r) => free.listen(0, '127.0.0.1', r));
    const { port } = free.address() as net.AddressInfo;
    await new Promise<void>((r) => free.close(() => r()));
    const { file, dataDir } = config('free', port);
    const before = qido;
    const s = serve(file);
    const deadline = Date.now() + 120_000;
    while (!(/"message":"gateway started"/.test(s.stderr()) && qido > before) && Date.now() < deadline)
      await new Promise((r) => setTimeout(r, 100));
    s.stop();
    const run = await s.done;
    expect(run.code).toBe(0);
    expect(qido).toBeGreaterThan(before);
    const audit = await auditKinds(dataDir);
    expect(audit['application-start']).toBe(1);
    expect(audit['application-stop']).toBe(1);
  });
});
