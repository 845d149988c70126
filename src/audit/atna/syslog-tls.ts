import { readFileSync } from 'node:fs';
import { hostname } from 'node:os';
import tls from 'node:tls';
import { EventOutcome } from '../audit-codes.js';

/**
 * Syslog over TLS to an Audit Record Repository (IHE ITI TF-2 3.20 "Record Audit Event", ITI-20):
 * RFC 5424 messages, RFC 5425 transport (TLS ≥ 1.2, octet-counting framing "MSG-LEN SP
 * SYSLOG-MSG"). Syslog-TLS has no application acknowledgement: a write whose callback has fired
 * is in the kernel's send buffer, not known to be stored by the receiver.
 */

/** RFC 5424 §6.2.1 facility 10: security/authorization messages (authpriv). */
export const SYSLOG_FACILITY_AUTHPRIV = 10;

/** RFC 5424 §6.2.1 severities used for audit outcomes. */
export const SyslogSeverity = { Critical: 2, Error: 3, Warning: 4, Notice: 5 } as const;
export type SyslogSeverity = (typeof SyslogSeverity)[keyof typeof SyslogSeverity];

/** PS3.15 A.5.1 EventOutcomeIndicator → severity: 0 notice, 4 warning, 8 error, 12 critical. */
export function severityOf(outcome: number): SyslogSeverity {
  if (outcome === EventOutcome.Success) return SyslogSeverity.Notice;
  if (outcome === EventOutcome.MinorFailure) return SyslogSeverity.Warning;
  if (outcome === EventOutcome.SeriousFailure) return SyslogSeverity.Error;
  return SyslogSeverity.Critical;
}

/** IHE ITI TF-2 3.20.6.1: MSGID of an audit message in the DICOM/RFC 3881 format. */
export const IHE_AUDIT_MSGID = 'IHE+RFC-3881';
const BOM = Buffer.from([0xef, 0xbb, 0xbf]);

export interface SyslogHeader {
  readonly timestamp: Date;
  /** RFC 5424 §6.2.4: FQDN, host name or IP; printable US-ASCII, at most 255. */
  readonly hostname?: string;
  /** RFC 5424 §6.2.5, at most 48. */
  readonly appName?: string;
  /** RFC 5424 §6.2.6, at most 128. */
  readonly procId?: string;
  readonly severity: SyslogSeverity;
}

/** RFC 5424 §6: header fields are PRINTUSASCII (33–126) and bounded; empty or unsafe → NILVALUE. */
function headerField(v: string | undefined, max: number): string {
  if (v === undefined) return '-';
  const s = v.replace(/[^\x21-\x7e]/g, '_').slice(0, max);
  return s === '' ? '-' : s;
}

/**
 * One RFC 5424 message: `<PRI>1 TIMESTAMP HOSTNAME APP-NAME PROCID MSGID - BOM MSG`, the XML as
 * the UTF-8 MSG (§6.4, with BOM), no structured data (NILVALUE).
 */
export function formatSyslogMessage(xml: string, h: SyslogHeader): Buffer {
  const pri = SYSLOG_FACILITY_AUTHPRIV * 8 + h.severity;
  const header = [
    `<${pri}>1`,
    h.timestamp.toISOString(),
    headerField(h.hostname ?? hostname(), 255),
    headerField(h.appName ?? 'radscribe', 48),
    headerField(h.procId ?? String(process.pid), 128),
    IHE_AUDIT_MSGID,
    '-',
  ].join(' ');
  return Buffer.concat([Buffer.from(`${header} `, 'ascii'), BOM, Buffer.from(xml, 'utf8')]);
}

/** RFC 5425 §4.3 octet-counting frame: `MSG-LEN SP SYSLOG-MSG`, MSG-LEN in octets. */
export function frameOctetCounted(msg: Buffer): Buffer {
  return Buffer.concat([Buffer.from(`${msg.length} `, 'ascii'), msg]);
}

export interface SyslogTlsOptions {
  readonly host: string;
  readonly port: number;
  /** PEM file of the CA(s) the repository's certificate must chain to (RFC 5425 §5.1). */
  readonly caFile: string;
  /** Client certificate and key for mutual authentication (IHE ATNA node authentication). */
  readonly certFile?: string;
  readonly keyFile?: string;
  /** Name the server certificate must match; default `host`. */
  readonly serverName?: string;
  readonly connectTimeoutMs?: number;
  /**
   * How long to wait after the TLS handshake, before the first frame, for the repository to refuse
   * us (default DEFAULT_ACCEPT_WINDOW_MS). A repository that requires a client certificate checks
   * ours only after the handshake has completed on our side: with TLS 1.3 the client's certificate
   * and Finished are its last flight (RFC 8446 §4.4), and rsyslog's gtls driver verifies the peer
   * after gnutls_handshake returns in TLS 1.2 as well. It then closes the connection (reset or FIN,
   * measured 1–25 ms after our secureConnect on loopback with rsyslog 8.2302). Without this wait,
   * the frames written in that gap get their write callbacks, so they look delivered and are lost.
   */
  readonly acceptWindowMs?: number;
}

/** See SyslogTlsOptions.acceptWindowMs: paid once per connection, not per message. */
export const DEFAULT_ACCEPT_WINDOW_MS = 300;

export class SyslogConnectionError extends Error {
  override readonly name = 'SyslogConnectionError';
}

/**
 * One TLS connection to the repository. `send` resolves when the frame has been handed to the
 * kernel (the write callback); a peer close or error makes the connection `broken`, and every
 * later `send` rejects, so the caller reconnects. Never reconnects by itself.
 */
export class SyslogTlsConnection {
  #socket: tls.TLSSocket;
  #broken: Error | undefined;

  private constructor(socket: tls.TLSSocket) {
    this.#socket = socket;
    const fail = (err: Error) => {
      this.#broken ??= err;
    };
    socket.on('error', fail);
    // The repository never writes to us; its FIN or close_notify means it went away.
    socket.on('end', () => fail(new SyslogConnectionError('audit repository closed the connection')));
    socket.on('close', () => fail(new SyslogConnectionError('connection to the audit repository closed')));
    socket.on('data', () => undefined);
  }

  static connect(o: SyslogTlsOptions): Promise<SyslogTlsConnection> {
    const ca = readFileSync(o.caFile);
    const cert = o.certFile ? readFileSync(o.certFile) : undefined;
    const key = o.keyFile ? readFileSync(o.keyFile) : undefined;
    return new Promise((resolve, reject) => {
      const socket = tls.connect({
        host: o.host,
        port: o.port,
        ca,
        ...(cert ? { cert } : {}),
        ...(key ? { key } : {}),
        servername: o.serverName ?? o.host,
        minVersion: 'TLSv1.2',
        rejectUnauthorized: true,
      });
      const timer = setTimeout(
        () => fail(`TLS connect to ${o.host}:${o.port} timed out`),
        o.connectTimeoutMs ?? 10_000,
      );
      let settled = false;
      const fail = (message: string) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        socket.destroy();
        reject(new SyslogConnectionError(message));
      };
      const refusedAfterHandshake = (err?: Error) =>
        fail(
          `audit repository ${o.host}:${o.port} closed the connection right after the TLS handshake ` +
            `(it refused our client certificate, or requires one and none is configured)${err ? `: ${err.message}` : ''}`,
        );
      const onError = (err: Error) => {
        if (socket.getProtocol()) refusedAfterHandshake(err);
        else fail(`TLS connect to ${o.host}:${o.port}: ${err.message}`);
      };
      const onGone = () => refusedAfterHandshake();
      const ignore = () => undefined;
      socket.once('secureConnect', () => {
        // The repository never writes to us: reading only notices its refusal (alert, FIN, reset).
        socket.on('data', ignore);
        socket.once('end', onGone);
        socket.once('close', onGone);
        const accept = () => {
          if (settled) return;
          settled = true;
          clearTimeout(timer);
          socket.removeListener('error', onError);
          socket.removeListener('end', onGone);
          socket.removeListener('close', onGone);
          socket.removeListener('data', ignore);
          resolve(new SyslogTlsConnection(socket));
        };
        const windowMs = o.acceptWindowMs ?? DEFAULT_ACCEPT_WINDOW_MS;
        // 0: no wait at all (tests show what the wait prevents).
        if (windowMs <= 0) accept();
        else setTimeout(accept, windowMs);
      });
      socket.on('error', onError);
    });
  }

  get broken(): boolean {
    return this.#broken !== undefined || this.#socket.destroyed;
  }

  /** Writes one framed message; resolves on the write callback. */
  send(frame: Buffer): Promise<void> {
    if (this.#broken) return Promise.reject(this.#broken);
    return new Promise((resolve, reject) => {
      this.#socket.write(frame, (err) => {
        if (err) {
          this.#broken ??= err;
          reject(err);
        } else if (this.#broken) reject(this.#broken);
        else resolve();
      });
    });
  }

  /** Ends the TLS session (close_notify) and waits for the socket to close; idempotent. */
  close(): Promise<void> {
    const s = this.#socket;
    if (s.destroyed) return Promise.resolve();
    return new Promise((resolve) => {
      const timer = setTimeout(() => s.destroy(), 2000);
      s.once('close', () => {
        clearTimeout(timer);
        resolve();
      });
      s.end();
    });
  }
}
