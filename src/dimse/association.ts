import type { Socket } from 'node:net';
import type { Logger } from '../logger.js';
import {
  CommandField,
  type CommandSet,
  type CStoreRq,
  DimseCommandError,
  DimseStatus,
  decodeCommandSet,
  encodeResponse,
  hasDataSet,
  MAX_COMMAND_SET_BYTES,
  parseRequest,
} from './dimse-command.js';
import {
  AbortReason,
  AbortSource,
  type AssociateRq,
  DICOM_APPLICATION_CONTEXT,
  encodePdu,
  fragmentPData,
  isPduError,
  PDV_HEADER_BYTES,
  type Pdu,
  PduReader,
  PduType,
  type PresentationContextAc,
  PresentationContextResult,
  RejectAcseReason,
  RejectResult,
  RejectSource,
  RejectUserReason,
} from './pdu.js';

/**
 * One DICOM Upper Layer association on one TCP connection, acceptor side (PS3.8 §9.2 state
 * machine, reduced to the states an acceptor passes through). pynetdicom splits this into `dul`
 * (PDU I/O), `acse` (negotiation) and `dimse` (messages); here they are three parts of one class:
 * read PDUs (bounded by PduReader), negotiate (policy from the caller), and reassemble P-DATA into
 * DIMSE messages whose data sets are streamed to a DataSetReceiver, never held whole.
 */

/** PS3.8 §9.2 states an acceptor uses. Closed set. */
export const AssociationState = {
  /** Sta2: transport open, awaiting A-ASSOCIATE-RQ (ARTIM running). */
  AwaitingAssociateRq: 'awaiting-associate-rq',
  /** Sta6: association established, ready for P-DATA. */
  Established: 'established',
  /** Sta13: RJ, RP or A-ABORT sent; awaiting the peer's close (ARTIM running). */
  AwaitingClose: 'awaiting-close',
  /** Sta1: connection closed. */
  Closed: 'closed',
} as const;
export type AssociationState = (typeof AssociationState)[keyof typeof AssociationState];

export interface AssociationTimeouts {
  /** ARTIM (PS3.8 §9.1.5): for the A-ASSOCIATE-RQ after connect, and for the close after RJ/RP/ABORT. */
  readonly artimMs: number;
  /** No bytes from the peer for this long while established: A-ABORT (network timeout). */
  readonly idleMs: number;
}

export const DEFAULT_ASSOCIATION_TIMEOUTS: AssociationTimeouts = { artimMs: 30_000, idleMs: 60_000 };

/** Associations a listener keeps open at once unless configured (config `dimse.maxAssociations`). */
export const DEFAULT_MAX_ASSOCIATIONS = 64;

export interface AssociationLimits {
  /** Our Maximum Length Received (PS3.8 D.1), advertised in the A-ASSOCIATE-AC and enforced. */
  readonly maxPduLength: number;
}

/** An accepted presentation context. */
export interface AcceptedContext {
  readonly id: number;
  readonly abstractSyntax: string;
  readonly transferSyntax: string;
}

/** What the acceptor knows about the peer once the RQ is in. */
export interface AssociationInfo {
  readonly callingAeTitle: string;
  readonly calledAeTitle: string;
  readonly remoteAddress: string;
  readonly peerImplementationClassUid: string;
}

/** The answer to an A-ASSOCIATE-RQ. */
export type AssociationDecision =
  | { readonly accept: true; readonly contexts: readonly PresentationContextAc[] }
  | { readonly accept: false; readonly result: number; readonly source: number; readonly reason: number };

/** Receives one data set's fragments; streaming, so it may apply backpressure by awaiting. */
export interface DataSetReceiver {
  write(fragment: Buffer): Promise<void>;
  /** The last fragment was written: store it and answer with a DIMSE status. Never throws. */
  end(): Promise<number>;
  /** The association ended before the data set was complete: drop what was written. */
  abort(): Promise<void>;
}

/** The service above the association (the SCP): negotiation policy and message handlers. */
export interface AssociationHandler {
  negotiate(rq: AssociateRq, info: AssociationInfo): Promise<AssociationDecision>;
  /** C-ECHO: the status to answer with. */
  echo(info: AssociationInfo): Promise<number>;
  /** C-STORE: a receiver for its data set. */
  store(rq: CStoreRq, context: AcceptedContext, info: AssociationInfo): Promise<DataSetReceiver>;
  /** Notification: the association ended (released, aborted, timed out). */
  closed?(info: AssociationInfo | undefined, how: string): void;
}

export interface AssociationOptions {
  readonly handler: AssociationHandler;
  readonly timeouts: AssociationTimeouts;
  readonly limits: AssociationLimits;
  readonly implementationClassUid: string;
  readonly implementationVersionName: string;
  readonly logger: Logger;
}

/** A DIMSE message in progress on the association (one at a time: no asynchronous operations). */
interface Pending {
  readonly contextId: number;
  commandChunks: Buffer[];
  commandBytes: number;
  command?: CommandSet;
  store?: { rq: CStoreRq; receiver: DataSetReceiver };
}

export class Association {
  #state: AssociationState = AssociationState.AwaitingAssociateRq;
  readonly #socket: Socket;
  readonly #opts: AssociationOptions;
  readonly #reader: PduReader;
  readonly #log: Logger;
  #artim: NodeJS.Timeout | undefined;
  #info: AssociationInfo | undefined;
  #contexts = new Map<number, AcceptedContext>();
  #peerMaxPdu = 0;
  #pending: Pending | undefined;
  /** PDUs are handled one after another; the socket is paused while one is. */
  #work: Promise<void> = Promise.resolve();
  #closedHow = 'closed by peer';

  constructor(socket: Socket, opts: AssociationOptions) {
    this.#socket = socket;
    this.#opts = opts;
    this.#log = opts.logger;
    this.#reader = new PduReader({ maxPduLength: opts.limits.maxPduLength, maxControlPduLength: 64 * 1024 });
    socket.setNoDelay(true);
    this.#startArtim();
    socket.on('data', (chunk: Buffer) => this.#onData(chunk));
    socket.on('error', (err) => {
      this.#closedHow = `socket error: ${err.message}`;
    });
    socket.on('close', () => this.#onClose());
    // Network timeout: a silent peer (half-open connection, stalled sender) is aborted.
    socket.setTimeout(opts.timeouts.idleMs, () => {
      if (this.#state === AssociationState.Established) {
        this.#log.warn('network timeout: aborting association', { idleMs: opts.timeouts.idleMs });
        this.#abort(AbortSource.ServiceProvider, AbortReason.NotSpecified, 'network timeout');
      } else this.#destroy('network timeout');
    });
  }

  get state(): AssociationState {
    return this.#state;
  }

  /** Abort from our side (service stopping): A-ABORT, then close. */
  shutdown(): void {
    if (this.#state === AssociationState.Closed) return;
    if (this.#state === AssociationState.Established)
      this.#abort(AbortSource.ServiceUser, AbortReason.NotSpecified, 'service stopping');
    else this.#destroy('service stopping');
  }

  #onData(chunk: Buffer): void {
    // After our last PDU (RJ, RP, A-ABORT) nothing the peer sends is read: dropped, never buffered,
    // so a peer that keeps sending until ARTIM closes it costs no memory (PS3.8 §9.2 Sta13, AA-6/AA-7).
    if (this.#state === AssociationState.Closed || this.#state === AssociationState.AwaitingClose) return;
    this.#reader.push(chunk);
    this.#socket.pause();
    this.#work = this.#work
      .then(() => this.#drain())
      .catch((err: unknown) => {
        this.#log.warn('association failed', { error: err instanceof Error ? err.message : String(err) });
        this.#abort(AbortSource.ServiceProvider, AbortReason.NotSpecified, 'internal error');
      })
      .finally(() => {
        if (this.#state !== AssociationState.Closed) this.#socket.resume();
      });
  }

  async #drain(): Promise<void> {
    for (;;) {
      if (this.#state === AssociationState.Closed || this.#state === AssociationState.AwaitingClose) return;
      let pdu: Pdu | undefined;
      try {
        pdu = this.#reader.next();
      } catch (err: unknown) {
        if (isPduError(err)) {
          this.#log.warn('malformed PDU: aborting association', { failure: err.failure, reason: err.message });
          this.#abort(AbortSource.ServiceProvider, err.abortReason, err.failure);
          return;
        }
        throw err;
      }
      if (!pdu) return;
      await this.#onPdu(pdu);
    }
  }

  async #onPdu(pdu: Pdu): Promise<void> {
    if (this.#state === AssociationState.AwaitingAssociateRq) {
      if (pdu.type !== PduType.AssociateRq) {
        this.#abort(AbortSource.ServiceProvider, AbortReason.UnexpectedPdu, 'expected A-ASSOCIATE-RQ');
        return;
      }
      this.#stopArtim();
      await this.#onAssociateRq(pdu);
      return;
    }
    // Established (Sta6).
    switch (pdu.type) {
      case PduType.PData:
        for (const pdv of pdu.pdvs) {
          if (this.#state !== AssociationState.Established) return;
          await this.#onPdv(pdv.contextId, pdv.command, pdv.last, pdv.fragment);
        }
        return;
      case PduType.ReleaseRq:
        if (this.#pending?.store) await this.#pending.store.receiver.abort();
        this.#pending = undefined;
        this.#send({ type: PduType.ReleaseRp });
        this.#closedHow = 'released';
        this.#awaitClose();
        return;
      case PduType.Abort:
        this.#closedHow = `aborted by peer (source ${pdu.source}, reason ${pdu.reason})`;
        this.#destroy(this.#closedHow);
        return;
      default:
        this.#abort(
          AbortSource.ServiceProvider,
          AbortReason.UnexpectedPdu,
          `unexpected PDU 0x${pdu.type.toString(16)}`,
        );
    }
  }

  async #onAssociateRq(rq: AssociateRq): Promise<void> {
    const info: AssociationInfo = {
      callingAeTitle: rq.callingAeTitle,
      calledAeTitle: rq.calledAeTitle,
      remoteAddress: this.#socket.remoteAddress ?? '',
      peerImplementationClassUid: rq.userInformation.implementationClassUid,
    };
    this.#info = info;
    let decision: AssociationDecision;
    // PS3.8 §9.3.2: bit 0 of the protocol version is version 1.
    if ((rq.protocolVersion & 1) === 0)
      decision = {
        accept: false,
        result: RejectResult.Permanent,
        source: RejectSource.ServiceProviderAcse,
        reason: RejectAcseReason.ProtocolVersionNotSupported,
      };
    else if (rq.applicationContext !== DICOM_APPLICATION_CONTEXT)
      decision = {
        accept: false,
        result: RejectResult.Permanent,
        source: RejectSource.ServiceUser,
        reason: RejectUserReason.ApplicationContextNameNotSupported,
      };
    else decision = await this.#opts.handler.negotiate(rq, info);
    if (!decision.accept) {
      this.#send({
        type: PduType.AssociateRj,
        result: decision.result,
        source: decision.source,
        reason: decision.reason,
      });
      this.#closedHow = `rejected (result ${decision.result}, source ${decision.source}, reason ${decision.reason})`;
      this.#awaitClose();
      return;
    }
    for (const pc of decision.contexts) {
      if (pc.result !== PresentationContextResult.Acceptance) continue;
      const asked = rq.presentationContexts.find((p) => p.id === pc.id);
      if (asked)
        this.#contexts.set(pc.id, {
          id: pc.id,
          abstractSyntax: asked.abstractSyntax,
          transferSyntax: pc.transferSyntax,
        });
    }
    this.#peerMaxPdu = rq.userInformation.maxPduLength;
    this.#send({
      type: PduType.AssociateAc,
      protocolVersion: 1,
      calledAeTitle: rq.calledAeTitle,
      callingAeTitle: rq.callingAeTitle,
      applicationContext: DICOM_APPLICATION_CONTEXT,
      presentationContexts: decision.contexts,
      userInformation: {
        maxPduLength: this.#opts.limits.maxPduLength,
        implementationClassUid: this.#opts.implementationClassUid,
        implementationVersionName: this.#opts.implementationVersionName,
      },
    });
    this.#state = AssociationState.Established;
    this.#log.info('association accepted', {
      callingAeTitle: info.callingAeTitle,
      calledAeTitle: info.calledAeTitle,
      acceptedContexts: this.#contexts.size,
      proposedContexts: rq.presentationContexts.length,
    });
  }

  /** PS3.8 Annex E / PS3.7 §8.1: command fragments, then (if announced) data set fragments. */
  async #onPdv(contextId: number, command: boolean, last: boolean, fragment: Buffer): Promise<void> {
    const ctx = this.#contexts.get(contextId);
    if (!ctx) {
      this.#abort(
        AbortSource.ServiceProvider,
        AbortReason.InvalidPduParameterValue,
        `PDV on unaccepted context ${contextId}`,
      );
      return;
    }
    const p = this.#pending;
    if (command) {
      if (p && (p.command || p.contextId !== contextId)) {
        this.#abort(
          AbortSource.ServiceProvider,
          AbortReason.UnexpectedPdu,
          'command fragment while a data set was expected',
        );
        return;
      }
      const cur: Pending = p ?? { contextId, commandChunks: [], commandBytes: 0 };
      this.#pending = cur;
      cur.commandBytes += fragment.length;
      if (cur.commandBytes > MAX_COMMAND_SET_BYTES) {
        this.#abort(AbortSource.ServiceProvider, AbortReason.InvalidPduParameterValue, 'command set too long');
        return;
      }
      cur.commandChunks.push(Buffer.from(fragment));
      if (last) await this.#onCommand(cur, ctx);
      return;
    }
    // Data set fragment.
    if (!p?.store || p.contextId !== contextId) {
      this.#abort(
        AbortSource.ServiceProvider,
        AbortReason.UnexpectedPdu,
        'data set fragment without a C-STORE command',
      );
      return;
    }
    await p.store.receiver.write(fragment);
    if (last) {
      const status = await p.store.receiver.end();
      this.#pending = undefined;
      this.#respond(contextId, {
        commandField: CommandField.CStoreRsp,
        messageIdBeingRespondedTo: p.store.rq.messageId,
        status,
        affectedSopClassUid: p.store.rq.affectedSopClassUid,
        affectedSopInstanceUid: p.store.rq.affectedSopInstanceUid,
      });
    }
  }

  async #onCommand(p: Pending, ctx: AcceptedContext): Promise<void> {
    const info = this.#info as AssociationInfo;
    let cmd: CommandSet;
    let rq: ReturnType<typeof parseRequest>;
    try {
      cmd = decodeCommandSet(Buffer.concat(p.commandChunks));
      rq = parseRequest(cmd);
    } catch (err: unknown) {
      if (!(err instanceof DimseCommandError)) throw err;
      // A command we cannot read has no message ID to answer: PS3.7 §8.2 leaves an abort.
      this.#log.warn('unreadable DIMSE command: aborting association', { reason: err.message });
      this.#abort(AbortSource.ServiceProvider, AbortReason.InvalidPduParameterValue, 'unreadable command');
      return;
    }
    p.command = cmd;
    p.commandChunks = [];
    if (rq.commandField === CommandField.CEchoRq) {
      if (hasDataSet(cmd)) {
        this.#abort(AbortSource.ServiceProvider, AbortReason.UnexpectedPduParameter, 'C-ECHO-RQ with a data set');
        return;
      }
      this.#pending = undefined;
      const status = await this.#opts.handler.echo(info);
      this.#respond(ctx.id, {
        commandField: CommandField.CEchoRsp,
        messageIdBeingRespondedTo: rq.messageId,
        status,
        affectedSopClassUid: rq.affectedSopClassUid || ctx.abstractSyntax,
      });
      return;
    }
    p.store = { rq, receiver: await this.#opts.handler.store(rq, ctx, info) };
  }

  #respond(contextId: number, r: Parameters<typeof encodeResponse>[0]): void {
    // Fragmented to the peer's Maximum Length Received (PS3.8 D.1); 0 = no limit.
    const cmd = encodeResponse(r);
    for (const pdu of fragmentPData(contextId, true, cmd, this.#peerMaxPdu, cmd.length + PDV_HEADER_BYTES))
      this.#send(pdu);
    if (r.status !== DimseStatus.Success)
      this.#log.info('DIMSE response', { status: `0x${r.status.toString(16).padStart(4, '0')}` });
  }

  #send(pdu: Pdu): void {
    if (this.#state === AssociationState.Closed || this.#socket.destroyed) return;
    this.#socket.write(encodePdu(pdu));
  }

  #abort(source: number, reason: number, why: string): void {
    if (this.#state === AssociationState.Closed || this.#state === AssociationState.AwaitingClose) return;
    this.#send({ type: PduType.Abort, source, reason });
    this.#closedHow = `aborted: ${why}`;
    this.#awaitClose();
  }

  /** Sta13: we have said our last PDU; the peer closes, or ARTIM closes for it (PS3.8 §9.2, AA-2). */
  #awaitClose(): void {
    this.#state = AssociationState.AwaitingClose;
    const pending = this.#pending;
    this.#pending = undefined;
    if (pending?.store) void pending.store.receiver.abort();
    this.#socket.end();
    this.#startArtim();
  }

  #startArtim(): void {
    this.#stopArtim();
    this.#artim = setTimeout(() => {
      this.#log.warn('ARTIM expired: closing connection', { state: this.#state });
      if (this.#state === AssociationState.AwaitingAssociateRq) this.#closedHow = 'ARTIM expired before A-ASSOCIATE-RQ';
      this.#destroy(this.#closedHow);
    }, this.#opts.timeouts.artimMs);
    this.#artim.unref();
  }

  #stopArtim(): void {
    if (this.#artim) clearTimeout(this.#artim);
    this.#artim = undefined;
  }

  #destroy(how: string): void {
    this.#closedHow = how;
    this.#socket.destroy();
  }

  #onClose(): void {
    if (this.#state === AssociationState.Closed) return;
    this.#stopArtim();
    const pending = this.#pending;
    this.#pending = undefined;
    this.#state = AssociationState.Closed;
    // A data set cut off by the close is dropped once the PDU in hand is done with it.
    if (pending?.store) void this.#work.finally(() => pending.store?.receiver.abort());
    this.#opts.handler.closed?.(this.#info, this.#closedHow);
  }
}
