import type { AddressInfo } from 'node:net';
import express from 'express';

/** Real express on an ephemeral loopback port (ky `create-http-test-server.ts`); `close()` is idempotent. */
export interface TestHttpServer {
  readonly url: string;
  readonly port: number;
  close(): Promise<void>;
}

export async function startTestServer(configure: (app: express.Express) => void): Promise<TestHttpServer> {
  const app = express();
  configure(app);
  const server = app.listen(0, '127.0.0.1');
  await new Promise<void>((resolve, reject) => {
    server.once('listening', resolve);
    server.once('error', reject);
  });
  const { port } = server.address() as AddressInfo;
  let closed: Promise<void> | undefined;
  return {
    url: `http://127.0.0.1:${port}`,
    port,
    close: () => {
      closed ??= new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      });
      return closed;
    },
  };
}
