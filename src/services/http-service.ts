import { readFileSync } from 'node:fs';
import type { RequestListener, Server } from 'node:http';
import { createServer } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import { ErrorCode, normalizeErrorString, RadScribeError } from '../errors.js';
import type { Service } from './service.js';

/**
 * The HTTP listener as a service. A listen error (EADDRINUSE, EACCES, EADDRNOTAVAIL) rejects start()
 * with a config-invalid error that names the address and the system code, so `radscribe serve`
 * exits non-zero with the cause instead of a half-started gateway.
 */
/** HTTPS (config `http.tls`): PEM files; TLS 1.2 is the least version offered (RFC 8996, BCP 195). */
export interface HttpTlsOptions {
  readonly certFile: string;
  readonly keyFile: string;
  /** CA bundle that client certificates must chain to; empty = no client certificates asked. */
  readonly clientCaFile: string;
  /** With clientCaFile: refuse a client without a valid certificate at the handshake. */
  readonly requireClientCert: boolean;
}

export const TLS_MIN_VERSION = 'TLSv1.2';

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
    /** HTTPS instead of HTTP when set. */
    private readonly tls?: HttpTlsOptions,
  ) {}

  /** Where the server listens, e.g. http://127.0.0.1:8080; throws when not listening. */
  get baseUrl(): string {
    const a = this.#server?.address() as AddressInfo | null | undefined;
    if (!a || typeof a === 'string')
      throw new RadScribeError(ErrorCode.Internal, 'gateway HTTP server is not listening');
    return `${this.tls ? 'https' : 'http'}://${a.family === 'IPv6' ? `[${a.address}]` : a.address}:${a.port}`;
  }

  async start(): Promise<void> {
    const timeout = this.requestTimeoutMs === undefined ? {} : { requestTimeout: this.requestTimeoutMs };
    const server = this.tls
      ? createHttpsServer({ ...timeout, ...this.#tlsContext(this.tls) }, this.listener())
      : createServer(timeout, this.listener());
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

  #tlsContext(t: HttpTlsOptions) {
    const read = (what: string, file: string): Buffer => {
      try {
        return readFileSync(file);
      } catch (err: unknown) {
        const code = (err as NodeJS.ErrnoException).code ?? 'unreadable';
        throw new RadScribeError(ErrorCode.ConfigInvalid, `http.tls.${what}: cannot read ${file}: ${code}`, {
          cause: err,
        });
      }
    };
    return {
      cert: read('certFile', t.certFile),
      key: read('keyFile', t.keyFile),
      minVersion: TLS_MIN_VERSION,
      ...(t.clientCaFile
        ? { ca: read('clientCaFile', t.clientCaFile), requestCert: true, rejectUnauthorized: t.requireClientCert }
        : {}),
    } as const;
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
