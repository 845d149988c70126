import { connect, createServer, type Server, type Socket } from 'node:net';

/**
 * A TCP proxy in front of a real DICOM SCP's port (Orthanc), for export-outage tests (issue 11). It
 * reads the upper-layer PDUs (PS3.8 §9.3: type, reserved, 32-bit length) of the SCP's side so it can
 * lose exactly one answer:
 * - `down()` closes the listening socket (connection refused: the PACS is down), `up()` listens
 *   again on the same port;
 * - `cutNextStoreResponse()`: the next association is forwarded until the SCP sends its first
 *   P-DATA-TF (the C-STORE-RSP of the first instance), which is dropped with both connections. The
 *   SCP has received, and stored, the instance; the sender never hears so.
 */
export interface DimseProxy {
  readonly port: number;
  down(): Promise<void>;
  up(): Promise<void>;
  /** Resolves when the answer has been cut. */
  cutNextStoreResponse(): Promise<void>;
  /** Connections accepted so far (associations attempted through the proxy). */
  readonly connections: number;
  close(): Promise<void>;
}

const P_DATA_TF = 0x04;

export async function startDimseProxy(targetPort: number, targetHost = '127.0.0.1'): Promise<DimseProxy> {
  const sockets = new Set<Socket>();
  let armed: (() => void) | undefined;
  let connections = 0;
  let server: Server | undefined;
  let port = 0;

  const onConnection = (client: Socket) => {
    connections++;
    const cut = armed;
    armed = undefined;
    const upstream = connect(targetPort, targetHost);
    sockets.add(client);
    sockets.add(upstream);
    const end = () => {
      client.destroy();
      upstream.destroy();
    };
    for (const s of [client, upstream]) {
      s.on('error', end);
      s.on('close', end);
    }
    client.on('data', (chunk: Buffer) => upstream.write(chunk));
    // The SCP's byte stream, PDU by PDU: forwarded whole until the first P-DATA-TF of a cut connection.
    let pending = Buffer.alloc(0);
    upstream.on('data', (chunk: Buffer) => {
      if (!cut) {
        client.write(chunk);
        return;
      }
      pending = Buffer.concat([pending, chunk]);
      while (pending.length >= 6) {
        const len = pending.readUInt32BE(2);
        if (pending.length < 6 + len) break;
        const pdu = pending.subarray(0, 6 + len);
        pending = pending.subarray(6 + len);
        if (pdu[0] === P_DATA_TF) {
          end();
          cut();
          return;
        }
        client.write(pdu);
      }
    });
  };

  const listen = (p: number) =>
    new Promise<void>((resolve, reject) => {
      const s = createServer(onConnection);
      s.once('error', reject);
      s.listen(p, '127.0.0.1', () => {
        server = s;
        const a = s.address();
        port = typeof a === 'object' && a ? a.port : p;
        resolve();
      });
    });
  const stopListening = () =>
    new Promise<void>((resolve) => {
      const s = server;
      server = undefined;
      if (!s) return resolve();
      s.close(() => resolve());
    });

  await listen(0);
  return {
    get port() {
      return port;
    },
    get connections() {
      return connections;
    },
    down: stopListening,
    up: () => (server ? Promise.resolve() : listen(port)),
    cutNextStoreResponse: () =>
      new Promise<void>((resolve) => {
        armed = resolve;
      }),
    close: async () => {
      for (const s of sockets) s.destroy();
      await stopListening();
    },
  };
}
