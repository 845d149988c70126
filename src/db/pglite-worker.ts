import { parentPort, workerData } from 'node:worker_threads';
import { PGlite } from '@electric-sql/pglite';
import { PGLiteSocketServer } from '@electric-sql/pglite-socket';
import { installSessionGate } from './pglite-session-gate.js';

/**
 * Embedded PostgreSQL in a worker thread: PGlite (wasm) plus the pglite-socket server, so the main
 * thread talks to it with a plain pg.Pool over loopback (reference/js-stack.md §7). A worker keeps
 * the wasm engine's CPU work off the main event loop, and loads PGlite with Node's own module
 * loader (PGlite imports `fs` dynamically, which a jest VM context cannot do).
 * Protocol: → {type:'ready', port} | {type:'error', message}; ← 'close' → {type:'closed'}.
 * Sockets share the one PGlite session through PgliteSessionGate (pglite-session-gate.ts): a
 * transaction or an extended-query cycle never interleaves with another socket's statements.
 */

export interface PgliteWorkerData {
  readonly dataDir: string;
  readonly maxConnections: number;
}

export type PgliteWorkerMessage =
  | { readonly type: 'ready'; readonly port: number }
  | { readonly type: 'error'; readonly message: string }
  | { readonly type: 'closed' };

const port = parentPort;
if (port) {
  const { dataDir, maxConnections } = workerData as PgliteWorkerData;
  const post = (m: PgliteWorkerMessage): void => port.postMessage(m);
  (async () => {
    const lite = await PGlite.create(dataDir);
    // Default maxConnections is 1; more clients fail with "Connection terminated unexpectedly".
    const server = new PGLiteSocketServer({ db: lite, host: '127.0.0.1', port: 0, maxConnections });
    installSessionGate(server, lite);
    try {
      await server.start();
    } catch (err) {
      await lite.close();
      throw err;
    }
    const conn = server.getServerConn();
    port.on('message', (m: unknown) => {
      if (m !== 'close') return;
      (async () => {
        await server.stop().catch(() => undefined);
        await lite.close();
      })().then(
        () => post({ type: 'closed' }),
        (err: unknown) => post({ type: 'error', message: err instanceof Error ? err.message : String(err) }),
      );
    });
    post({ type: 'ready', port: Number(conn.slice(conn.lastIndexOf(':') + 1)) });
  })().catch((err: unknown) => post({ type: 'error', message: err instanceof Error ? err.message : String(err) }));
}
