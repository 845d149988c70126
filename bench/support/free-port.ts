import { createServer } from 'node:net';

/**
 * A TCP port on 127.0.0.1 that was free a moment ago, for a peer started by a test or benchmark
 * (storescp, Orthanc, rsyslog, a private PostgreSQL, a gateway child). The peer binds it itself,
 * so another process could take it in between; the callers start at once and fail loudly if so.
 */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const a = s.address();
      const port = typeof a === 'object' && a ? a.port : 0;
      s.close(() => resolve(port));
    });
  });
}
