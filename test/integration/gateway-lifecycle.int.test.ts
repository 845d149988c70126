import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { freePort } from '../../bench/support/free-port.js';
import { main } from '../../src/cli.js';
import { migrate } from '../../src/db/migrate.js';
import { openDatabase } from '../../src/db/pool.js';
import { Gateway } from '../../src/gateway.js';
import { backends, type TestGatewaySetup, testGatewaySetup } from '../support/gateway.js';
import { startTestServer, type TestHttpServer } from '../support/http.js';

/**
 * [REQ-LIFE-01] (issue 8) The gateway is an ordered list of services started in order and closed in
 * reverse, also when a later start fails: a port in use or a failing start-up audit leaves no
 * listener, no job worker, no poller and no inference process behind, and records no
 * application-start. Checked from the outside: the port, the process table, the fake PACS's log.
 */

/** Live child processes of this process (Linux /proc; the inference host is one). */
function childPids(): Set<number> {
  const out = new Set<number>();
  for (const d of readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    try {
      const stat = readFileSync(`/proc/${d}/stat`, 'utf8');
      // Fields after the parenthesised command: state ppid …
      const [state, ppid] = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      if (Number(ppid) === process.pid && state !== 'Z') out.add(Number(d));
    } catch {
      // The process ended while we looked.
    }
  }
  return out;
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** Resolves to the connection error code, or 'connected'. */
function connect(port: number): Promise<string> {
  return new Promise((resolve) => {
    const s = net.connect(port, '127.0.0.1');
    s.once('connect', () => {
      s.destroy();
      resolve('connected');
    });
    s.once('error', (e: NodeJS.ErrnoException) => resolve(e.code ?? 'error'));
  });
}

async function countAudit(setup: TestGatewaySetup): Promise<Record<string, number>> {
  const db = await openDatabase({ url: setup.config.database.url || undefined, dataDir: setup.dataDir, poolSize: 1 });
  try {
    const r = await db.pool.query<{ kind: string; n: number }>(
      `SELECT kind, count(*)::int AS n FROM audit_events GROUP BY kind`,
    );
    return Object.fromEntries(r.rows.map((x) => [x.kind, x.n]));
  } finally {
    await db.close();
  }
}

describe.each(backends())('gateway lifecycle on %s', (backend) => {
  let pacs: TestHttpServer;
  let qidoRequests = 0;
  beforeAll(async () => {
    pacs = await startTestServer((app) =>
      app.get('/dicom-web/studies', (_req, res) => {
        qidoRequests++;
        res.status(200).type('application/dicom+json').send('[]');
      }),
    );
  });
  afterAll(() => pacs?.close());

  it('[REQ-LIFE-01] a port in use fails the start with EADDRINUSE and leaves nothing running', async () => {
    const blocker = net.createServer();
    await new Promise<void>((r) => blocker.listen(0, '127.0.0.1', r));
    const { port } = blocker.address() as net.AddressInfo;
    const setup = await testGatewaySetup(backend, { http: { host: '127.0.0.1', port } });
    const before = childPids();
    try {
      const gw = new Gateway(setup.config, { actor: 'test' });
      await expect(gw.start()).rejects.toThrow(/EADDRINUSE/);
      // A second start gives the first one's outcome; it does not restart half-closed services.
      await expect(gw.start()).rejects.toThrow(/EADDRINUSE/);
      // The inference process had started (it comes before the listener) and is gone again.
      const pid = gw.model.inferencePid as number;
      expect(pid).toBeGreaterThan(0);
      expect(alive(pid)).toBe(false);
      expect([...childPids()].filter((p) => !before.has(p))).toEqual([]);
      // The pool is ended: the gateway holds no database connection.
      expect(gw.db.pool.ended).toBe(true);
      // The failed start is not an application start, and so not a stop either.
      const audit = await countAudit(setup);
      expect(audit['application-start']).toBeUndefined();
      expect(audit['application-stop']).toBeUndefined();
      expect(audit['config-change']).toBe(1);
    } finally {
      await new Promise<void>((r) => blocker.close(() => r()));
      await setup.dispose();
    }
  });

  it('[REQ-LIFE-02] a failing start-up audit closes listener, worker, poller and inference again', async () => {
    const port = await freePort();
    const setup = await testGatewaySetup(backend, {
      http: { host: '127.0.0.1', port },
      remoteNodes: [
        {
          name: 'fake-pacs',
          baseUrl: `${pacs.url}/dicom-web`,
          poll: { enabled: true, intervalMs: 100, lookbackDays: 1 },
        },
      ],
    });
    // The database refuses exactly the application-start record, so every other service has
    // started by then (it is the last one). It refuses after a pause: the poller's first QIDO
    // request is scheduled on start (setTimeout 0) and must reach the fake PACS before the
    // refusal closes the poller again, even on a loaded CI machine.
    const db = await openDatabase({ url: setup.config.database.url || undefined, dataDir: setup.dataDir, poolSize: 1 });
    await migrate(db.pool);
    await db.pool.query(`
      CREATE FUNCTION refuse_application_start() RETURNS trigger LANGUAGE plpgsql AS $$
      BEGIN
        IF NEW.kind = 'application-start' THEN
          PERFORM pg_sleep(1);
          RAISE EXCEPTION 'audit store refused the record';
        END IF;
        RETURN NEW;
      END $$;
      CREATE TRIGGER refuse_application_start BEFORE INSERT ON audit_events
        FOR EACH ROW EXECUTE FUNCTION refuse_application_start();`);
    await db.close();
    const before = childPids();
    try {
      const gw = new Gateway(setup.config, { actor: 'test' });
      await expect(gw.start()).rejects.toThrow('audit store refused the record');
      expect(await connect(port)).toBe('ECONNREFUSED');
      expect(gw.worker.running).toBe(false);
      const pid = gw.model.inferencePid as number;
      expect(alive(pid)).toBe(false);
      expect([...childPids()].filter((p) => !before.has(p))).toEqual([]);
      // The poller had started (it asked the fake PACS) and asks no more.
      expect(qidoRequests).toBeGreaterThan(0);
      const asked = qidoRequests;
      await new Promise((r) => setTimeout(r, 600));
      expect(qidoRequests).toBe(asked);
      expect(gw.db.pool.ended).toBe(true);
      expect((await countAudit(setup))['application-stop']).toBeUndefined();
    } finally {
      await setup.dispose();
    }
  });
});

describe('radscribe serve', () => {
  it('[REQ-LIFE-03] exits non-zero with the cause when the port is in use', async () => {
    const blocker = net.createServer();
    await new Promise<void>((r) => blocker.listen(0, '127.0.0.1', r));
    const { port } = blocker.address() as net.AddressInfo;
    const dataDir = mkdtempSync(path.join(tmpdir(), 'rs-serve-'));
    const saved = { ...process.env };
    Object.assign(process.env, {
      RADSCRIBE_DATA_DIR: dataDir,
      RADSCRIBE_HTTP_HOST: '127.0.0.1',
      RADSCRIBE_HTTP_PORT: String(port),
    });
    delete process.env.RADSCRIBE_DATABASE_URL;
    const stderr: string[] = [];
    const spy = jest.spyOn(process.stderr, 'write').mockImplementation((chunk: string | Uint8Array) => {
      stderr.push(String(chunk));
      return true;
    });
    try {
      const code = await main(['serve']);
      expect(code).not.toBe(0);
      expect(stderr.join('')).toMatch(/radscribe: http: cannot listen on 127\.0\.0\.1:\d+: EADDRINUSE/);
    } finally {
      spy.mockRestore();
      process.env = saved;
      await new Promise<void>((r) => blocker.close(() => r()));
      rmSync(dataDir, { recursive: true, force: true });
    }
  });
});
