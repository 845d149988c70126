import type { RequestListener, Server } from 'node:http';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { ErrorCode, normalizeErrorString, RadScribeError } from '../errors.js';
import type { Service } from './service.js';

/**
 * The HTTP listener as a service. A listen error (EADDRINUSE, EACCES, EADDRNOTAVAIL) rejects start()
 * with a config-invalid error that names the address and the system code, so `radscribe serve`
 * exits non-zero with the cause instead of a half-started gateway.
 */
export class HttpService implements Service {
  readonly name = 'http';
  #server: Server | undefined;
  #closing: Promise<void> | undefined;

  constructor(
    private readonly listener: () => RequestListener,
    private readonly host: string,
    private readonly port: number,
    /** node:http `requestTimeout` (config `http.requestTimeoutMs`; 0 = none); unset = Node's default. */
    private readonly requestTimeoutMs?: number,
  ) {}

  /** Where the server listens, e.g. http://127.0.0.1:8080; throws when not listening. */
  get baseUrl(): string {
    const a = this.#server?.address() as AddressInfo | null | undefined;
    if (!a || typeof a === 'string')
      throw new RadScribeError(ErrorCode.Internal, 'gateway HTTP server is not listening');
    return `http://${a.family === 'IPv6' ? `[${a.address}]` : a.address}:${a.port}`;
  }

  async start(): Promise<void> {
    const server =
      this.requestTimeoutMs === undefined
        ? createServer(this.listener())
        : createServer({ requestTimeout: this.requestTimeoutMs }, this.listener());
    this.#server = server;
    await new Promise<void>((resolve, reject) => {
      const onError = (err: NodeJS.ErrnoException) => {
        server.off('listening', onListening);
        const code = typeof err.code === 'string' ? err.code : 'unknown error';
        reject(
          new RadScribeError(
            ErrorCode.ConfigInvalid,
            `http: cannot listen on ${this.host}:${this.port}: ${code} (${typeof err.message === 'string' ? err.message : normalizeErrorString(err)})`,
            { cause: err },
          ),
        );
      };
      const onListening = () => {
        server.off('error', onError);
        resolve();
      };
      server.once('error', onError);
      server.once('listening', onListening);
      server.listen(this.port, this.host);
    });
  }

  close(): Promise<void> {
    this.#closing ??= new Promise<void>((resolve) => {
      const server = this.#server;
      if (!server?.listening) {
        resolve();
        return;
      }
      // Keep-alive sockets would hold close() open until they time out.
      server.close(() => resolve());
      server.closeIdleConnections();
    });
    return this.#closing;
  }
}
