import net from 'node:net';
import tls from 'node:tls';
import { RADSCRIBE_IMPLEMENTATION_CLASS_UID, RADSCRIBE_IMPLEMENTATION_VERSION_NAME } from '../dicom/sr/sr-document.js';
import { ErrorCode, RadScribeError } from '../errors.js';
import { type DicomTlsClientConfig, dicomTlsClientOptions, isTlsRefusal } from './dicom-tls.js';
import {
  type CommandSet,
  DimseCommandError,
  decodeCommandSet,
  hasDataSet,
  MAX_COMMAND_SET_BYTES,
} from './dimse-command.js';
import {
  AbortReason,
  AbortSource,
  type AssociateAc,
  DEFAULT_MAX_PDU_LENGTH,
  DICOM_APPLICATION_CONTEXT,
  encodePdu,
  fragmentPData,
  isPduError,
  type Pdu,
  PduReader,
  PduType,
  PresentationContextResult,
  type PresentationContextRq,
  RejectResult,
} from './pdu.js';

/**
 * One DICOM Upper Layer association, requestor side (PS3.8 §9.2: Sta4 → Sta5 → Sta6 → Sta7),
 * shared by the C-ECHO SCU (echo-scu.ts) and the C-STORE SCU (store-scu.ts): connect, send the
 * A-ASSOCIATE-RQ, read the AC/RJ, exchange DIMSE messages one at a time (no asynchronous operations
 * window is proposed, PS3.7 D.3.3.3, so one outstanding request is all the peer may expect),
 * release. Every failure is a DimseAssociationError with a closed `failure` value.
 */

/** Why an association (or a message on it) failed. Closed set. */
export const AssociationFailure = {
  /** TCP connect refused or reset (ECONNREFUSED, EHOSTUNREACH, …). */
  ConnectFailed: 'connect-failed',
  /** TCP connect did not complete within `connectMs`. */
  ConnectTimeout: 'connect-timeout',
  /** No A-ASSOCIATE-AC/RJ within ARTIM (PS3.8 §9.1.5), or no A-RELEASE-RP after our RQ. */
  ArtimTimeout: 'artim-timeout',
  /** A-ASSOCIATE-RJ (PS3.8 §9.3.4). */
  Rejected: 'rejected',
  /** A-ABORT from the peer (PS3.8 §9.3.8). */
  Aborted: 'aborted',
  /** The connection closed without a release or abort. */
  Closed: 'closed',
  /** No DIMSE response within `dimseMs`. */
  ResponseTimeout: 'response-timeout',
  /** The peer sent something we cannot read (malformed PDU, unexpected PDU, unreadable command). */
  ProtocolError: 'protocol-error',
  /**
   * DICOM TLS refused (PS3.15 B.1): the SCP's certificate does not chain to our CA or does not
   * carry its name, or the SCP refused ours (a TLS alert), or no common version/suite.
   */
  TlsRefused: 'tls-refused',
} as const;
export type AssociationFailure = (typeof AssociationFailure)[keyof typeof AssociationFailure];

export class DimseAssociationError extends RadScribeError {
  override name = 'DimseAssociationError';
  constructor(
    readonly failure: AssociationFailure,
    message: string,
    /** The A-ASSOCIATE-RJ fields, for `rejected`. */
    readonly rejection?: { readonly result: number; readonly source: number; readonly reason: number },
    options?: { cause?: unknown },
  ) {
    // A permanent rejection (PS3.8 Table 9-21 result 1: unknown AE title, no common application
    // context) will not change on retry, nor will a TLS refusal (a certificate that does not verify
    // is configuration trouble on one side or the other, not a network hiccup: retrying would only
    // repeat the refusal and, on the SCP, its security alert); everything else (transient RJ,
    // timeouts, aborts, closed connections) may: the job retries with backoff.
    super(
      (failure === AssociationFailure.Rejected && rejection?.result === RejectResult.Permanent) ||
        failure === AssociationFailure.ProtocolError ||
        failure === AssociationFailure.TlsRefused
        ? ErrorCode.PacsRejected
        : ErrorCode.PacsUnavailable,
      message,
      options,
    );
  }
}

export function isDimseAssociationError(err: unknown, failure?: AssociationFailure): err is DimseAssociationError {
  return err instanceof DimseAssociationError && (failure === undefined || err.failure === failure);
}

export interface RequestorTimeouts {
  /** TCP connect. */
  readonly connectMs: number;
  /** ARTIM (PS3.8 §9.1.5): A-ASSOCIATE-RQ sent → AC/RJ, and A-RELEASE-RQ sent → RP. */
  readonly artimMs: number;
  /** Request sent (all its fragments) → response read (PS3.7 leaves this to the implementation). */
  readonly dimseMs: number;
}

export const DEFAULT_REQUESTOR_TIMEOUTS: RequestorTimeouts = { connectMs: 10_000, artimMs: 30_000, dimseMs: 60_000 };

export interface RequestorOptions {
  readonly host: string;
  readonly port: number;
  readonly calledAeTitle: string;
  readonly callingAeTitle: string;
  readonly presentationContexts: readonly PresentationContextRq[];
  readonly timeouts?: Partial<RequestorTimeouts>;
  /** Our Maximum Length Received (PS3.8 D.1), advertised and enforced on what we read. */
  readonly maxPduLength?: number;
  /** DICOM TLS (PS3.15 B.1/B.9, dicom-tls.ts) instead of plain TCP. */
  readonly tls?: DicomTlsClientConfig;
}

/** A presentation context the acceptor accepted, with the transfer syntax it chose. */
export interface NegotiatedContext {
  readonly id: number;
  readonly abstractSyntax: string;
  readonly transferSyntax: string;
}

/** One DIMSE message read from the peer. */
export interface DimseMessage {
  readonly contextId: number;
  readonly command: CommandSet;
  readonly dataSet?: Buffer;
}

interface Waiter {
  resolve(m: DimseMessage): void;
  reject(e: DimseAssociationError): void;
}

export class RequestorAssociation {
  readonly #socket: net.Socket;
  readonly #reader: PduReader;
  readonly #timeouts: RequestorTimeouts;
  readonly #proposed: readonly PresentationContextRq[];
  #ac: AssociateAc | undefined;
  #accepted = new Map<number, NegotiatedContext>();
  #failure: DimseAssociationError | undefined;
  #waiter: Waiter | undefined;
  #released: (() => void) | undefined;
  #commandChunks: Buffer[] = [];
  #commandBytes = 0;
  #dataChunks: Buffer[] = [];
  #pendingCommand: CommandSet | undefined;
  #pendingContext = 0;

  private constructor(socket: net.Socket, opts: RequestorOptions, timeouts: RequestorTimeouts) {
    this.#socket = socket;
    this.#timeouts = timeouts;
    this.#proposed = opts.presentationContexts;
    const max = opts.maxPduLength ?? DEFAULT_MAX_PDU_LENGTH;
    this.#reader = new PduReader({ maxPduLength: max, maxControlPduLength: 64 * 1024 });
  }

  /**
   * Connect and negotiate. Resolves once the A-ASSOCIATE-AC is in (even when it accepted none of
   * the contexts: the caller decides per context); throws DimseAssociationError otherwise.
   */
  static async open(opts: RequestorOptions): Promise<RequestorAssociation> {
    const timeouts = { ...DEFAULT_REQUESTOR_TIMEOUTS, ...opts.timeouts };
    // Certificate files are read before connecting: an unreadable one is config-invalid, not a
    // network failure.
    const socket = opts.tls
      ? tls.connect({ host: opts.host, port: opts.port, ...dicomTlsClientOptions(opts.tls, opts.host, 'tls') })
      : net.connect({ host: opts.host, port: opts.port });
    socket.setNoDelay(true);
    const a = new RequestorAssociation(socket, opts, timeouts);
    await a.#connect(opts);
    return a;
  }

  /** The peer's Maximum Length Received (0 = no limit). */
  get peerMaxPduLength(): number {
    return this.#ac?.userInformation.maxPduLength ?? 0;
  }

  get peerImplementationClassUid(): string {
    return this.#ac?.userInformation.implementationClassUid ?? '';
  }

  /** Accepted contexts, by ID. */
  get accepted(): ReadonlyMap<number, NegotiatedContext> {
    return this.#accepted;
  }

  /** The AC's result for each proposed context ID (PS3.8 Table 9-18). */
  resultOf(id: number): PresentationContextResult | undefined {
    return this.#ac?.presentationContexts.find((p) => p.id === id)?.result;
  }

  /** Whether the association still carries messages (not aborted, closed or failed). */
  get usable(): boolean {
    return this.#failure === undefined && !this.#socket.destroyed;
  }

  #connect(opts: RequestorOptions): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      // connect: TCP; tls: handshake (DICOM TLS only); associate: A-ASSOCIATE-RQ sent.
      let phase: 'connect' | 'tls' | 'associate' = 'connect';
      const fail = (e: DimseAssociationError): void => {
        clearTimeout(timer);
        this.#fail(e);
        reject(e);
      };
      let timer = setTimeout(
        () =>
          fail(
            new DimseAssociationError(
              AssociationFailure.ConnectTimeout,
              `connect to ${opts.host}:${opts.port} timed out after ${this.#timeouts.connectMs} ms`,
            ),
          ),
        this.#timeouts.connectMs,
      );
      this.#onEstablished = (): void => {
        clearTimeout(timer);
        resolve();
      };
      this.#onNegotiationFailure = fail;
      this.#socket.on('error', (err) => {
        // With TLS 1.3 the client's handshake completes before the server has checked our
        // certificate: its refusal (an alert) arrives after the A-ASSOCIATE-RQ went out, so any TLS
        // refusal before the AC counts.
        const e =
          opts.tls && phase !== 'connect' && !this.#ac && isTlsRefusal(err)
            ? new DimseAssociationError(
                AssociationFailure.TlsRefused,
                `DICOM TLS with ${opts.host}:${opts.port} refused: ${(err as NodeJS.ErrnoException).code ?? ''} ${err.message}`.trim(),
                undefined,
                { cause: err },
              )
            : new DimseAssociationError(
                phase === 'connect' ? AssociationFailure.ConnectFailed : AssociationFailure.Closed,
                `network error: ${err.message}`,
                undefined,
                { cause: err },
              );
        if (phase === 'connect' || !this.#ac) fail(e);
        else this.#fail(e);
      });
      this.#socket.on('close', () => {
        const e = new DimseAssociationError(AssociationFailure.Closed, 'connection closed by peer');
        if (!this.#ac) fail(e);
        else this.#fail(e);
      });
      this.#socket.on('data', (chunk: Buffer) => this.#onData(chunk));
      const associate = (): void => {
        phase = 'associate';
        this.#socket.write(
          encodePdu({
            type: PduType.AssociateRq,
            protocolVersion: 1,
            calledAeTitle: opts.calledAeTitle,
            callingAeTitle: opts.callingAeTitle,
            applicationContext: DICOM_APPLICATION_CONTEXT,
            presentationContexts: opts.presentationContexts,
            userInformation: {
              maxPduLength: opts.maxPduLength ?? DEFAULT_MAX_PDU_LENGTH,
              implementationClassUid: RADSCRIBE_IMPLEMENTATION_CLASS_UID,
              implementationVersionName: RADSCRIBE_IMPLEMENTATION_VERSION_NAME,
            },
          }),
        );
      };
      this.#socket.once('connect', () => {
        phase = opts.tls ? 'tls' : 'associate';
        clearTimeout(timer);
        // ARTIM runs from the A-ASSOCIATE-RQ until the AC/RJ (PS3.8 §9.2, AE-2); with TLS it also
        // covers the handshake before it (PS3.8 §9.1.1: the transport connection is the TLS one).
        timer = setTimeout(
          () =>
            fail(
              new DimseAssociationError(
                AssociationFailure.ArtimTimeout,
                `no A-ASSOCIATE-AC within ${this.#timeouts.artimMs} ms (ARTIM)`,
              ),
            ),
          this.#timeouts.artimMs,
        );
        if (opts.tls) this.#socket.once('secureConnect', associate);
        else associate();
      });
    });
  }

  #onEstablished: () => void = () => {};
  #onNegotiationFailure: (e: DimseAssociationError) => void = () => {};

  /**
   * Send one DIMSE message (command, then the data set if any) on `contextId`, each fragmented to
   * the peer's Maximum Length Received, and wait for the response (at most `dimseMs` after the last
   * fragment left). Socket backpressure is honoured between PDUs.
   */
  async request(contextId: number, command: Buffer, dataSet?: Buffer): Promise<DimseMessage> {
    if (this.#failure) throw this.#failure;
    if (this.#waiter) throw new Error('RequestorAssociation.request: a request is already outstanding');
    const response = new Promise<DimseMessage>((resolve, reject) => {
      this.#waiter = { resolve, reject };
    });
    // The rejection is observed below; never let it be "unhandled" while we are still writing.
    response.catch(() => {});
    for (const pdu of fragmentPData(contextId, true, command, this.peerMaxPduLength)) await this.#write(pdu);
    if (dataSet)
      for (const pdu of fragmentPData(contextId, false, dataSet, this.peerMaxPduLength)) await this.#write(pdu);
    const timer = setTimeout(() => {
      const e = new DimseAssociationError(
        AssociationFailure.ResponseTimeout,
        `no DIMSE response within ${this.#timeouts.dimseMs} ms`,
      );
      // The peer may still answer later; abort so that answer cannot be taken for the next request.
      this.#abortWith(e);
    }, this.#timeouts.dimseMs);
    try {
      return await response;
    } finally {
      clearTimeout(timer);
    }
  }

  /**
   * Send a request answered by a series of responses (C-FIND, C-MOVE, C-GET: zero or more Pending
   * responses, then one final, PS3.7 §9.1.2–§9.1.4) and hand each message to `onMessage`, which
   * returns `'done'` after the final one. The response timeout (`dimseMs`) runs afresh after each
   * message: a long C-MOVE only needs to show progress. A throw from `onMessage` aborts the
   * association and rejects with that error. A C-CANCEL-RQ may go out meanwhile (`sendCommand`).
   */
  async requestStream(
    contextId: number,
    command: Buffer,
    dataSet: Buffer | undefined,
    onMessage: (m: DimseMessage) => 'more' | 'done',
  ): Promise<void> {
    if (this.#failure) throw this.#failure;
    if (this.#waiter) throw new Error('RequestorAssociation.requestStream: a request is already outstanding');
    let finish: () => void = () => {};
    let failWith: (e: unknown) => void = () => {};
    const done = new Promise<void>((resolve, reject) => {
      finish = resolve;
      failWith = reject;
    });
    done.catch(() => {});
    let timer: NodeJS.Timeout | undefined;
    const arm = (): void => {
      clearTimeout(timer);
      timer = setTimeout(() => {
        this.#abortWith(
          new DimseAssociationError(
            AssociationFailure.ResponseTimeout,
            `no DIMSE response within ${this.#timeouts.dimseMs} ms`,
          ),
        );
      }, this.#timeouts.dimseMs);
    };
    const waiter: Waiter = {
      resolve: (m) => {
        let next: 'more' | 'done';
        try {
          next = onMessage(m);
        } catch (err: unknown) {
          this.abort();
          failWith(err);
          return;
        }
        if (next === 'done') finish();
        else {
          this.#waiter = waiter;
          arm();
        }
      },
      reject: (e) => failWith(e),
    };
    this.#waiter = waiter;
    for (const pdu of fragmentPData(contextId, true, command, this.peerMaxPduLength)) await this.#write(pdu);
    if (dataSet)
      for (const pdu of fragmentPData(contextId, false, dataSet, this.peerMaxPduLength)) await this.#write(pdu);
    arm();
    try {
      await done;
    } finally {
      clearTimeout(timer);
    }
  }

  /**
   * Send a command that has no response of its own while a request is outstanding: C-CANCEL-RQ
   * (PS3.7 §9.3.2.3), whose effect is seen in the final response of the request it cancels.
   */
  async sendCommand(contextId: number, command: Buffer): Promise<void> {
    for (const pdu of fragmentPData(contextId, true, command, this.peerMaxPduLength)) await this.#write(pdu);
  }

  /** A-RELEASE (PS3.8 §7.2): RQ, wait for RP (ARTIM), close. A failure here loses nothing already stored. */
  async release(): Promise<void> {
    if (this.#failure) {
      this.#socket.destroy();
      return;
    }
    const done = new Promise<void>((resolve, reject) => {
      this.#released = resolve;
      this.#waiter = { resolve: () => {}, reject };
    });
    done.catch(() => {});
    await this.#write({ type: PduType.ReleaseRq });
    const timer = setTimeout(() => {
      this.#fail(
        new DimseAssociationError(
          AssociationFailure.ArtimTimeout,
          `no A-RELEASE-RP within ${this.#timeouts.artimMs} ms (ARTIM)`,
        ),
      );
    }, this.#timeouts.artimMs);
    try {
      await done;
    } finally {
      clearTimeout(timer);
      this.#waiter = undefined;
      this.#socket.destroy();
    }
  }

  /** A-ABORT from our side (PS3.8 §7.3.1), then close. */
  abort(): void {
    this.#abortWith(new DimseAssociationError(AssociationFailure.Aborted, 'aborted by us'));
  }

  /**
   * Send A-ABORT and close: `end` flushes the PDU before the FIN (AA-1 then Sta13); ARTIM's
   * worth of time later the socket is destroyed whatever the peer did.
   */
  #abortWith(e: DimseAssociationError, reason: number = AbortReason.NotSpecified): void {
    const open = !this.#socket.destroyed && this.#socket.writable;
    if (open) this.#socket.end(encodePdu({ type: PduType.Abort, source: AbortSource.ServiceUser, reason }));
    this.#fail(e, !open);
    if (open) setTimeout(() => this.#socket.destroy(), Math.min(this.#timeouts.artimMs, 5_000)).unref();
  }

  #write(pdu: Pdu): Promise<void> {
    if (this.#failure) return Promise.reject(this.#failure);
    return new Promise<void>((resolve) => {
      if (this.#socket.write(encodePdu(pdu))) resolve();
      else {
        // Resolve on drain, or when the connection goes (the failure is reported by #fail).
        const done = (): void => {
          this.#socket.off('drain', done);
          this.#socket.off('close', done);
          resolve();
        };
        this.#socket.once('drain', done);
        this.#socket.once('close', done);
      }
    }).then(() => {
      if (this.#failure) throw this.#failure;
    });
  }

  #fail(e: DimseAssociationError, destroy = true): void {
    if (this.#failure) return;
    this.#failure = e;
    const w = this.#waiter;
    this.#waiter = undefined;
    w?.reject(e);
    if (destroy) this.#socket.destroy();
  }

  #protocolError(message: string, reason: number = AbortReason.UnexpectedPdu): void {
    const e = new DimseAssociationError(AssociationFailure.ProtocolError, message);
    this.#abortWith(e, reason);
    // During negotiation the open() promise is still waiting: it is told through #onNegotiationFailure.
    if (!this.#ac) this.#onNegotiationFailure(e);
  }

  #onData(chunk: Buffer): void {
    if (this.#failure) return;
    this.#reader.push(chunk);
    try {
      for (let pdu = this.#reader.next(); pdu; pdu = this.#reader.next()) {
        this.#onPdu(pdu);
        if (this.#failure) return;
      }
    } catch (err: unknown) {
      if (isPduError(err)) this.#protocolError(`malformed PDU from peer: ${err.message}`, err.abortReason);
      else if (err instanceof DimseCommandError) this.#protocolError(`unreadable DIMSE response: ${err.message}`);
      else throw err;
    }
  }

  #onPdu(pdu: Pdu): void {
    if (!this.#ac) {
      switch (pdu.type) {
        case PduType.AssociateAc:
          this.#ac = pdu;
          for (const pc of pdu.presentationContexts) {
            const asked = this.#proposed.find((p) => p.id === pc.id);
            // PS3.8 §9.3.3.2: the accepted transfer syntax must be one we proposed for that context.
            if (
              asked &&
              pc.result === PresentationContextResult.Acceptance &&
              asked.transferSyntaxes.includes(pc.transferSyntax)
            )
              this.#accepted.set(pc.id, {
                id: pc.id,
                abstractSyntax: asked.abstractSyntax,
                transferSyntax: pc.transferSyntax,
              });
          }
          this.#onEstablished();
          return;
        case PduType.AssociateRj:
          this.#onNegotiationFailure(
            new DimseAssociationError(
              AssociationFailure.Rejected,
              `association rejected (result ${pdu.result}, source ${pdu.source}, reason ${pdu.reason})`,
              { result: pdu.result, source: pdu.source, reason: pdu.reason },
            ),
          );
          return;
        case PduType.Abort:
          this.#onNegotiationFailure(
            new DimseAssociationError(
              AssociationFailure.Aborted,
              `aborted by peer (source ${pdu.source}, reason ${pdu.reason})`,
            ),
          );
          return;
        default:
          this.#protocolError(`unexpected PDU 0x${pdu.type.toString(16)} during negotiation`);
          return;
      }
    }
    switch (pdu.type) {
      case PduType.PData:
        for (const pdv of pdu.pdvs) this.#onPdv(pdv.contextId, pdv.command, pdv.last, pdv.fragment);
        return;
      case PduType.ReleaseRp: {
        const r = this.#released;
        this.#released = undefined;
        if (r) r();
        else this.#protocolError('A-RELEASE-RP without a release request');
        return;
      }
      case PduType.Abort:
        this.#fail(
          new DimseAssociationError(
            AssociationFailure.Aborted,
            `aborted by peer (source ${pdu.source}, reason ${pdu.reason})`,
          ),
        );
        return;
      default:
        // A-RELEASE-RQ from the acceptor is not allowed (only the requestor releases, PS3.8 §7.2).
        this.#protocolError(`unexpected PDU 0x${pdu.type.toString(16)}`);
    }
  }

  #onPdv(contextId: number, command: boolean, last: boolean, fragment: Buffer): void {
    if (!this.#accepted.has(contextId)) {
      this.#protocolError(`PDV on unaccepted context ${contextId}`, AbortReason.InvalidPduParameterValue);
      return;
    }
    if (command) {
      if (this.#pendingCommand) {
        this.#protocolError('command fragment while a data set was expected');
        return;
      }
      this.#commandBytes += fragment.length;
      if (this.#commandBytes > MAX_COMMAND_SET_BYTES) {
        this.#protocolError('command set too long', AbortReason.InvalidPduParameterValue);
        return;
      }
      this.#commandChunks.push(Buffer.from(fragment));
      if (!last) return;
      const cmd = decodeCommandSet(Buffer.concat(this.#commandChunks));
      this.#commandChunks = [];
      this.#commandBytes = 0;
      if (hasDataSet(cmd)) {
        this.#pendingCommand = cmd;
        this.#pendingContext = contextId;
        return;
      }
      this.#deliver({ contextId, command: cmd });
      return;
    }
    if (!this.#pendingCommand || this.#pendingContext !== contextId) {
      this.#protocolError('data set fragment without a command');
      return;
    }
    this.#dataChunks.push(Buffer.from(fragment));
    if (!last) return;
    const msg = { contextId, command: this.#pendingCommand, dataSet: Buffer.concat(this.#dataChunks) };
    this.#pendingCommand = undefined;
    this.#dataChunks = [];
    this.#deliver(msg);
  }

  #deliver(m: DimseMessage): void {
    const w = this.#waiter;
    this.#waiter = undefined;
    if (!w) {
      this.#protocolError('DIMSE message without an outstanding request');
      return;
    }
    w.resolve(m);
  }
}
