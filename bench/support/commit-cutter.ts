import { connect, createServer, type Server, type Socket } from 'node:net';

/**
 * A TCP proxy in front of a PostgreSQL Unix socket that can lose a COMMIT's answer (issue 9): once
 * armed, it forwards the next simple-query COMMIT to the server and then cuts the connection before
 * the server's reply reaches the client. The transaction is committed, the client only sees
 * "Connection terminated": the case whose outcome the client cannot know.
 */
export interface CommitCutter {
  readonly port: number;
  /** Cut the next COMMIT's answer; resolves when it has been cut. */
  armOnce(): Promise<void>;
  close(): Promise<void>;
}

/** 'Q' Int32 len, then the query text: is this a simple query whose text is COMMIT? */
function isCommitQuery(chunk: Buffer): boolean {
  for (let i = 0; i + 5 < chunk.length; i++) {
    if (chunk[i] !== 0x51) continue;
    const len = chunk.readInt32BE(i + 1);
    const text = chunk.subarray(i + 5, Math.min(chunk.length, i + 1 + len)).toString('latin1');
    if (/^\s*COMMIT\b/i.test(text)) return true;
  }
  return false;
}

export async function startCommitCutter(socketPath: string): Promise<CommitCutter> {
  let armed: (() => void) | undefined;
  const sockets = new Set<Socket>();
  const server: Server = createServer((client) => {
    const upstream = connect(socketPath);
    sockets.add(client);
    sockets.add(upstream);
    let cutNextReply = false;
    const end = () => {
      client.destroy();
      upstream.destroy();
    };
    client.on('error', end);
    upstream.on('error', end);
    client.on('close', end);
    upstream.on('close', end);
    client.on('data', (chunk: Buffer) => {
      if (armed && isCommitQuery(chunk)) cutNextReply = true;
      upstream.write(chunk);
    });
    upstream.on('data', (chunk: Buffer) => {
      if (cutNextReply) {
        // The server has answered the COMMIT: it is durable. The client never hears of it.
        const done = armed;
        armed = undefined;
        end();
        done?.();
        return;
      }
      client.write(chunk);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const a = server.address();
  const port = typeof a === 'object' && a ? a.port : 0;
  return {
    port,
    armOnce: () =>
      new Promise<void>((resolve) => {
        armed = resolve;
      }),
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
}
