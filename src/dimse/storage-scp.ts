import { createHash, randomUUID } from 'node:crypto';
import { type FileHandle, open, rm } from 'node:fs/promises';
import net from 'node:net';
import path from 'node:path';
import tls from 'node:tls';
import type pg from 'pg';
import { AuditEventKind, EventOutcome } from '../audit/audit-codes.js';
import { recordAudit } from '../audit/audit-log.js';
import { RADSCRIBE_IMPLEMENTATION_CLASS_UID, RADSCRIBE_IMPLEMENTATION_VERSION_NAME } from '../dicom/sr/sr-document.js';
import { SopClass, STORAGE_SOP_CLASS_ROOT, TransferSyntax } from '../dicom/uids.js';
import { ErrorCode, normalizeErrorString, RadScribeError } from '../errors.js';
import {
  FailureReason,
  type InstanceSink,
  type ReceiptContext,
  ReceivedVia,
  type RefusalRecorder,
} from '../ingest/types.js';
import { childLogger, type Logger } from '../logger.js';
import { isDecodableTransferSyntax } from '../pacs/transfer-syntax-negotiation.js';
import { sameAeTitle } from './ae-title.js';
import {
  type AcceptedContext,
  Association,
  type AssociationDecision,
  type AssociationHandler,
  type AssociationInfo,
  type AssociationTimeouts,
  type DataSetReceiver,
  DEFAULT_ASSOCIATION_TIMEOUTS,
  DEFAULT_MAX_ASSOCIATIONS,
} from './association.js';
import { hostMatcher, sopClassAllowed } from './association-policy.js';
import { type DicomTlsListenerConfig, dicomTlsServerOptions } from './dicom-tls.js';
import { type CStoreRq, DimseStatus } from './dimse-command.js';
import {
  type AssociateRq,
  DEFAULT_MAX_PDU_LENGTH,
  type PresentationContextAc,
  PresentationContextResult,
  RejectPresentationReason,
  RejectResult,
  RejectSource,
  RejectUserReason,
} from './pdu.js';

/**
 * C-ECHO SCP (Verification, PS3.4 Annex A) and C-STORE SCP (Storage, PS3.4 Annex B) on one local
 * AE title and port. Each data set is streamed, fragment by fragment, into a PS3.10 file in the
 * spool directory (File Meta Information built from the command and the accepted presentation
 * context, PS3.10 §7.1), hashed as it goes, then handed to the same InstanceSink STOW-RS uses. The
 * C-STORE-RSP is sent only after the sink answers, so 0000 means the file is fsynced and renamed and
 * its row committed (reference/dicom-sr-and-audit.md §7).
 */

export interface DimseListenerConfig {
  /** Our AE title (Called AE Title the peer must use). */
  readonly aeTitle: string;
  readonly port: number;
  readonly host: string;
  /** Calling AE titles allowed to associate; absent = any. */
  readonly allowedCallingAeTitles?: readonly string[];
  /** Peer addresses allowed to associate: IP addresses or CIDR blocks (association-policy.ts); absent = any. */
  readonly allowedHosts?: readonly string[];
  /**
   * Storage SOP Class UIDs accepted at presentation-context negotiation; absent = every storage SOP
   * class. Verification is always accepted (association-policy.ts sopClassAllowed).
   */
  readonly allowedSopClasses?: readonly string[];
  /** The routes[].name this AE feeds (issue 11); absent = the routing rules decide. */
  readonly route?: string;
  /** DICOM TLS (PS3.15 B.1/B.9, dicom-tls.ts) instead of plain TCP; absent = plain TCP. */
  readonly tls?: DicomTlsListenerConfig;
}

export interface StorageScpOptions {
  readonly listener: DimseListenerConfig;
  readonly sink: InstanceSink;
  /** Spool directory, on the storage file system (the sink renames from it). */
  readonly tmpDir: string;
  /** For `association-rejected` audit events. */
  readonly pool: pg.Pool;
  /** For refusals made here, before the sink (instance over the size limit). */
  readonly refusals?: RefusalRecorder;
  /** Maximum Length Received we advertise and enforce (PS3.8 D.1); default 256 KiB. */
  readonly maxPduLength?: number;
  /** Largest data set accepted (bytes); a larger one is read to its end and answered 0xA700. */
  readonly maxInstanceBytes?: number;
  readonly timeouts?: Partial<AssociationTimeouts>;
  /**
   * Associations open at once on this listener; one more is rejected as transient (A-ASSOCIATE-RJ
   * 2/3/2, local limit exceeded, PS3.8 Table 9-21) so the sender retries later. Default 64.
   */
  readonly maxAssociations?: number;
  readonly logger?: Logger;
}

export const DEFAULT_MAX_INSTANCE_BYTES = 4 * 1024 ** 3;

/** Uncompressed syntaxes offered for Verification (PS3.4 A.4: Implicit VR LE at least). */
const VERIFICATION_SYNTAXES: ReadonlySet<string> = new Set([
  TransferSyntax.ImplicitVrLittleEndian,
  TransferSyntax.ExplicitVrLittleEndian,
]);

/** PS3.10 §7.1: 128-byte preamble, "DICM", then group 0002 in Explicit VR Little Endian. */
export function fileMetaInformation(
  sopClassUid: string,
  sopInstanceUid: string,
  transferSyntaxUid: string,
  sourceAe: string,
): Buffer {
  const el = (elem: number, vr: string, value: Buffer): Buffer => {
    const long = vr === 'OB';
    const h = Buffer.alloc(long ? 12 : 8);
    h.writeUInt16LE(0x0002, 0);
    h.writeUInt16LE(elem, 2);
    h.write(vr, 4, 'latin1');
    if (long) h.writeUInt32LE(value.length, 8);
    else h.writeUInt16LE(value.length, 6);
    return Buffer.concat([h, value]);
  };
  const padded = (s: string, pad: string): Buffer => Buffer.from(s.length % 2 ? s + pad : s, 'latin1');
  const body = Buffer.concat([
    el(0x0001, 'OB', Buffer.from([0x00, 0x01])),
    el(0x0002, 'UI', padded(sopClassUid, '\0')),
    el(0x0003, 'UI', padded(sopInstanceUid, '\0')),
    el(0x0010, 'UI', padded(transferSyntaxUid, '\0')),
    el(0x0012, 'UI', padded(RADSCRIBE_IMPLEMENTATION_CLASS_UID, '\0')),
    el(0x0013, 'SH', padded(RADSCRIBE_IMPLEMENTATION_VERSION_NAME, ' ')),
    ...(sourceAe ? [el(0x0016, 'AE', padded(sourceAe, ' '))] : []),
  ]);
  const len = Buffer.alloc(4);
  len.writeUInt32LE(body.length, 0);
  return Buffer.concat([Buffer.alloc(128), Buffer.from('DICM', 'latin1'), el(0x0000, 'UL', len), body]);
}

/** The transfer syntax we accept for a proposed context: the first proposed one we can decode. */
export function chooseTransferSyntax(
  abstractSyntax: string,
  proposed: readonly string[],
): PresentationContextAc['result'] | string {
  if (abstractSyntax === SopClass.Verification) {
    return (
      proposed.find((ts) => VERIFICATION_SYNTAXES.has(ts)) ?? PresentationContextResult.TransferSyntaxesNotSupported
    );
  }
  if (!abstractSyntax.startsWith(STORAGE_SOP_CLASS_ROOT)) return PresentationContextResult.AbstractSyntaxNotSupported;
  return proposed.find((ts) => isDecodableTransferSyntax(ts)) ?? PresentationContextResult.TransferSyntaxesNotSupported;
}

export class StorageScp {
  readonly #opts: StorageScpOptions;
  readonly #log: Logger;
  readonly #server: net.Server | tls.Server;
  readonly #associations = new Set<Association>();
  /** Each association's end, for retire(). */
  readonly #ended = new Map<Association, () => void>();
  /**
   * The policy new associations are checked against; replaced by updateListener(). An association
   * keeps the one it started with (issue 11: a change applied during a transfer does not break it).
   */
  #listener: DimseListenerConfig;
  #closing: Promise<void> | undefined;
  #retiring: Promise<void> | undefined;

  constructor(opts: StorageScpOptions) {
    this.#opts = opts;
    this.#listener = opts.listener;
    this.#log = opts.logger ?? childLogger(`dimse:${opts.listener.aeTitle}`);
    const tlsCfg = opts.listener.tls;
    if (tlsCfg) {
      // The Upper Layer runs unchanged over the TLS socket (PS3.8 §9.1.1); a TLSSocket is a Socket.
      // A connection that never completes the handshake is dropped after ARTIM, as one that never
      // sends its A-ASSOCIATE-RQ would be.
      // Client certificates are checked here rather than by node:tls (rejectUnauthorized), which
      // drops an unverified peer after the handshake without an error event: we need the reason
      // for the log and the audit.
      const server = tls.createServer(
        {
          ...dicomTlsServerOptions(tlsCfg, `dimse.listeners[${opts.listener.aeTitle}].tls`),
          rejectUnauthorized: false,
          handshakeTimeout: opts.timeouts?.artimMs ?? DEFAULT_ASSOCIATION_TIMEOUTS.artimMs,
        },
        (socket) => {
          if (tlsCfg.requireClientCert && !socket.authorized) {
            // node:tls reports a missing certificate as UNABLE_TO_GET_ISSUER_CERT; say what happened.
            const reason = socket.authorizationError;
            const presented = Object.keys(socket.getPeerCertificate() ?? {}).length > 0;
            const code = !presented
              ? 'NO_PEER_CERTIFICATE'
              : typeof reason === 'string'
                ? reason
                : (reason?.message ?? 'UNKNOWN');
            void this.#onHandshakeFailure(code, `client certificate refused: ${code}`, socket);
            return;
          }
          this.#onConnection(socket);
        },
      );
      // Reading the TCP socket's address caches it there, for #onHandshakeFailure.
      server.prependListener('connection', (raw: net.Socket) => void raw.remoteAddress);
      server.on(
        'tlsClientError',
        (err: NodeJS.ErrnoException, socket) =>
          void this.#onHandshakeFailure(err.code ?? 'unknown', err.message, socket),
      );
      this.#server = server;
    } else this.#server = net.createServer((socket) => this.#onConnection(socket));
  }

  /** Whether this listener speaks DICOM TLS. */
  get tls(): boolean {
    return this.#opts.listener.tls !== undefined;
  }

  /**
   * A TLS handshake that failed: no certificate, one from a CA we do not trust, a plain DICOM
   * connection on the TLS port, no common version or cipher suite. Nothing reached the Upper Layer.
   * Logged (address and OpenSSL reason only; no AE title is known yet) and audited as a Security
   * Alert, Node Authentication (PS3.15 A.5.3.11), the same kind as a refused association.
   */
  async #onHandshakeFailure(code: string, message: string, socket: tls.TLSSocket): Promise<void> {
    // After a failed handshake the TLS socket is already torn down and no longer knows its peer;
    // the TCP socket under it (node:tls `_parent`, not in its typings) kept the address read on
    // connection, and counts the bytes that came (the TLS socket counts only decrypted ones).
    const tcp = (socket as tls.TLSSocket & { _parent?: net.Socket })._parent;
    const remoteAddress = socket.remoteAddress ?? tcp?.remoteAddress ?? '';
    socket.destroy();
    if (tcp?.bytesRead === 0) {
      // Connected and went without a byte (a load balancer's or monitor's TCP check, a port
      // scan): no handshake was attempted, nothing to alert on; auditing each would flood the trail.
      this.#log.debug('connection closed before any TLS handshake', { remoteAddress, code });
      return;
    }
    this.#log.warn('DICOM TLS handshake refused', { remoteAddress, code, reason: message });
    try {
      await recordAudit(this.#opts.pool, {
        kind: AuditEventKind.AssociationRejected,
        outcome: EventOutcome.MinorFailure,
        ...(remoteAddress ? { actor: remoteAddress, source: remoteAddress } : {}),
        detail: {
          localAeTitle: this.#opts.listener.aeTitle,
          transport: 'tls',
          tlsError: code,
          reasonText: `TLS handshake failed: ${message}`,
        },
      });
    } catch (auditErr: unknown) {
      this.#log.warn('could not audit refused TLS handshake', { error: normalizeErrorString(auditErr) });
    }
  }

  /** Listens on the configured host and port (0 = any free port; see `port`). */
  async start(): Promise<void> {
    await new Promise<void>((resolve, reject) => {
      const onError = (err: Error): void => reject(err);
      this.#server.once('error', onError);
      this.#server.listen(this.#opts.listener.port, this.#opts.listener.host, () => {
        this.#server.off('error', onError);
        resolve();
      });
    });
    this.#log.info('DIMSE listener started', {
      aeTitle: this.#opts.listener.aeTitle,
      port: this.port,
      transport: this.tls ? 'tls' : 'tcp',
    });
  }

  get port(): number {
    const a = this.#server.address();
    return typeof a === 'object' && a ? a.port : 0;
  }

  get aeTitle(): string {
    return this.#opts.listener.aeTitle;
  }

  /** The policy new associations get (the last updateListener(), else the one constructed with). */
  get listener(): DimseListenerConfig {
    return this.#listener;
  }

  /**
   * A new policy (calling AE titles, hosts, SOP classes, route) for associations that start from now
   * on; those already open keep theirs. The socket is not touched: a change of AE title, host, port
   * or TLS needs another listener (listener-registry.ts rebinds), and is refused here.
   */
  updateListener(next: DimseListenerConfig): void {
    const cur = this.#opts.listener;
    if (
      next.aeTitle !== cur.aeTitle ||
      next.host !== cur.host ||
      next.port !== cur.port ||
      JSON.stringify(next.tls ?? null) !== JSON.stringify(cur.tls ?? null)
    )
      throw new RadScribeError(ErrorCode.Internal, 'updateListener cannot change AE title, host, port or TLS');
    this.#listener = next;
  }

  /** Associations open now. */
  get openAssociations(): number {
    return this.#associations.size;
  }

  /**
   * Stops accepting connections and resolves once every open association has ended by itself (its
   * transfer completes; ARTIM and the idle timeout still bound it). For a rebind or a removal.
   */
  retire(): Promise<void> {
    this.#retiring ??= (async () => {
      const pending = [...this.#associations].map((a) => new Promise<void>((r) => this.#ended.set(a, r)));
      await new Promise<void>((resolve) => (this.#server.listening ? this.#server.close(() => resolve()) : resolve()));
      await Promise.all(pending);
      this.#log.info('DIMSE listener retired', { aeTitle: this.aeTitle });
    })();
    return this.#retiring;
  }

  /** Stops listening and aborts open associations (their partial data sets are dropped). Idempotent. */
  close(): Promise<void> {
    this.#closing ??= new Promise<void>((resolve) => {
      // Also after retire(), when the server no longer listens but associations may still run.
      for (const a of this.#associations) a.shutdown();
      if (!this.#server.listening) return resolve();
      this.#server.close(() => resolve());
    });
    return this.#closing;
  }

  #onConnection(socket: net.Socket): void {
    if (this.#closing || this.#retiring) {
      socket.destroy();
      return;
    }
    // The policy of this association, fixed at its start.
    const listener = this.#listener;
    const assoc: Association = new Association(socket, {
      handler: this.#handler(listener, () => {
        this.#associations.delete(assoc);
        this.#ended.get(assoc)?.();
        this.#ended.delete(assoc);
      }),
      timeouts: { ...DEFAULT_ASSOCIATION_TIMEOUTS, ...this.#opts.timeouts },
      limits: { maxPduLength: this.#opts.maxPduLength ?? DEFAULT_MAX_PDU_LENGTH },
      implementationClassUid: RADSCRIBE_IMPLEMENTATION_CLASS_UID,
      implementationVersionName: RADSCRIBE_IMPLEMENTATION_VERSION_NAME,
      logger: this.#log,
    });
    this.#associations.add(assoc);
  }

  #handler(listener: DimseListenerConfig, onClosed: () => void): AssociationHandler {
    return {
      negotiate: (rq, info) => this.#negotiate(rq, info, listener),
      echo: async () => DimseStatus.Success,
      store: (rq, ctx, info) => this.#store(rq, ctx, info),
      closed: (info, how) => {
        onClosed();
        this.#log.debug('association closed', { callingAeTitle: info?.callingAeTitle, how });
      },
    };
  }

  async #negotiate(rq: AssociateRq, info: AssociationInfo, l: DimseListenerConfig): Promise<AssociationDecision> {
    let reject: { reason: number; why: string } | undefined;
    if (this.#associations.size > (this.#opts.maxAssociations ?? DEFAULT_MAX_ASSOCIATIONS)) {
      this.#log.warn('association rejected: local limit exceeded', { open: this.#associations.size - 1 });
      return {
        accept: false,
        result: RejectResult.Transient,
        source: RejectSource.ServiceProviderPresentation,
        reason: RejectPresentationReason.LocalLimitExceeded,
      };
    }
    if (!sameAeTitle(rq.calledAeTitle, l.aeTitle))
      reject = { reason: RejectUserReason.CalledAeTitleNotRecognized, why: 'called AE title not recognised' };
    else if (l.allowedCallingAeTitles && !l.allowedCallingAeTitles.some((t) => sameAeTitle(t, rq.callingAeTitle)))
      reject = { reason: RejectUserReason.CallingAeTitleNotRecognized, why: 'calling AE title not allowed' };
    // PS3.8 Table 9-21 has no reason for a peer address: 1-1-1 (permanent, service user, no reason
    // given). Answering "calling AE title not recognised" would send the sender's operator to change
    // a title that is right; the audit event and the log say which check failed.
    else if (l.allowedHosts && !hostMatcher(l.allowedHosts)(info.remoteAddress ?? ''))
      reject = { reason: RejectUserReason.NoReasonGiven, why: 'calling host not allowed' };
    if (reject) {
      this.#log.warn('association rejected', {
        callingAeTitle: rq.callingAeTitle,
        calledAeTitle: rq.calledAeTitle,
        reason: reject.why,
      });
      await this.#auditRejection(info, reject.reason, reject.why);
      return { accept: false, result: RejectResult.Permanent, source: RejectSource.ServiceUser, reason: reject.reason };
    }
    const contexts: PresentationContextAc[] = rq.presentationContexts.map((pc) => {
      // A SOP class this AE does not take is refused per context (PS3.8 Table 9-18 result 3,
      // abstract-syntax-not-supported): the association goes on with the others, and the sender
      // sees, per SOP class, that this AE does not support it, as its conformance statement says.
      const choice = sopClassAllowed(l.allowedSopClasses, pc.abstractSyntax)
        ? chooseTransferSyntax(pc.abstractSyntax, pc.transferSyntaxes)
        : PresentationContextResult.AbstractSyntaxNotSupported;
      return typeof choice === 'string'
        ? { id: pc.id, result: PresentationContextResult.Acceptance, transferSyntax: choice }
        : {
            id: pc.id,
            result: choice,
            transferSyntax: pc.transferSyntaxes[0] ?? TransferSyntax.ImplicitVrLittleEndian,
          };
    });
    return { accept: true, contexts };
  }

  /** PS3.15 A.5.3.11 Security Alert, Node Authentication failure: who knocked, and why they were refused. */
  async #auditRejection(info: AssociationInfo, reason: number, why: string): Promise<void> {
    try {
      await recordAudit(this.#opts.pool, {
        kind: AuditEventKind.AssociationRejected,
        outcome: EventOutcome.MinorFailure,
        actor: info.callingAeTitle,
        ...(info.remoteAddress ? { source: info.remoteAddress } : {}),
        detail: {
          calledAeTitle: info.calledAeTitle,
          callingAeTitle: info.callingAeTitle,
          localAeTitle: this.#opts.listener.aeTitle,
          result: RejectResult.Permanent,
          source: RejectSource.ServiceUser,
          reason,
          reasonText: why,
        },
      });
    } catch (err: unknown) {
      this.#log.warn('could not audit rejected association', { error: normalizeErrorString(err) });
    }
  }

  async #store(rq: CStoreRq, ctx: AcceptedContext, info: AssociationInfo): Promise<DataSetReceiver> {
    const receipt: ReceiptContext = {
      via: ReceivedVia.CStore,
      ...(info.remoteAddress ? { remoteAddress: info.remoteAddress } : {}),
      actor: info.callingAeTitle,
      // The listener's own title (the association was accepted because the Called AE matched it).
      calledAeTitle: this.#opts.listener.aeTitle,
      expectedSopClassUid: rq.affectedSopClassUid,
      expectedSopInstanceUid: rq.affectedSopInstanceUid,
    };
    const sink = this.#opts.sink;
    let refusedUpFront = false;
    try {
      await sink.admit?.(0, receipt);
    } catch {
      // The sink audited the refusal (insufficient storage): the data set is read and dropped.
      refusedUpFront = true;
    }
    return new SpoolingReceiver({
      tmpDir: this.#opts.tmpDir,
      meta: fileMetaInformation(
        rq.affectedSopClassUid,
        rq.affectedSopInstanceUid,
        ctx.transferSyntax,
        info.callingAeTitle,
      ),
      maxBytes: this.#opts.maxInstanceBytes ?? DEFAULT_MAX_INSTANCE_BYTES,
      refusedUpFront,
      finish: async (file) => {
        const out = await sink.accept(file, receipt);
        if (out.status !== 'failed') return DimseStatus.Success;
        return out.failureReason;
      },
      tooLarge: async (sha256, sizeBytes) => {
        await this.#opts.refusals?.instanceRefused({
          via: ReceivedVia.CStore,
          code: ErrorCode.PayloadTooLarge,
          failureReason: FailureReason.OutOfResources,
          sha256,
          sizeBytes,
          ...(info.remoteAddress ? { remoteAddress: info.remoteAddress } : {}),
          actor: info.callingAeTitle,
          calledAeTitle: this.#opts.listener.aeTitle,
        });
      },
      logger: this.#log,
    });
  }
}

interface SpoolingReceiverOptions {
  readonly tmpDir: string;
  readonly meta: Buffer;
  readonly maxBytes: number;
  readonly refusedUpFront: boolean;
  readonly finish: (file: { path: string; sizeBytes: number; sha256: string }) => Promise<number>;
  readonly tooLarge: (sha256: string, sizeBytes: number) => Promise<void>;
  readonly logger: Logger;
}

/**
 * Fragments of one data set being written to its spool file at once (bytes): below this, a fragment's
 * write is queued and the association reads the next PDU while the thread pool writes (issue 14: one
 * awaited write per fragment stalled the socket for each), above it the association waits.
 */
export const DEFAULT_SPOOL_WRITE_BEHIND_BYTES = 4 * 1024 * 1024;

/**
 * Streams one data set into `<tmpDir>/c-store-<uuid>.part` (PS3.10 file: preamble, meta, data set as
 * received, in the accepted transfer syntax). Writes are queued in order; memory: the fragments not
 * yet written, at most DEFAULT_SPOOL_WRITE_BEHIND_BYTES plus one fragment.
 */
class SpoolingReceiver implements DataSetReceiver {
  readonly #path: string;
  readonly #hash = createHash('sha256');
  #fh: Promise<FileHandle> | undefined;
  #size = 0;
  #dataBytes = 0;
  #discarding: boolean;
  #done = false;
  /** Fragments received and not yet written, in order; written together by one writev. */
  #queued: Buffer[] = [];
  #queuedBytes = 0;
  /** The write in progress; settles once nothing is queued (or a write failed). */
  #writes: Promise<void> = Promise.resolve();
  #writing = false;
  #writeError: unknown;
  #metaHashed = false;

  constructor(private readonly o: SpoolingReceiverOptions) {
    this.#path = path.join(o.tmpDir, `c-store-${randomUUID()}.part`);
    this.#discarding = o.refusedUpFront;
  }

  async #file(): Promise<FileHandle> {
    this.#fh ??= (async () => {
      const fh = await open(this.#path, 'wx', 0o600);
      await this.#append(fh, this.o.meta);
      return fh;
    })();
    return this.#fh;
  }

  async #append(fh: FileHandle, b: Buffer): Promise<void> {
    let off = 0;
    while (off < b.length) {
      const { bytesWritten } = await fh.write(b, off, b.length - off);
      off += bytesWritten;
    }
    this.#size += b.length;
  }

  /** Everything queued, in as few writev calls as the queue fills up meanwhile (issue 14). */
  async #drainQueue(): Promise<void> {
    try {
      while (this.#queued.length > 0 && this.#writeError === undefined && !this.#discarding) {
        const batch = this.#queued;
        this.#queued = [];
        const fh = await this.#file();
        const bytes = batch.reduce((n, b) => n + b.length, 0);
        const { bytesWritten } = await fh.writev(batch);
        this.#size += bytesWritten;
        // A short write (not seen on regular files): the rest one buffer at a time.
        if (bytesWritten < bytes) {
          let skip = bytesWritten;
          for (const b of batch) {
            if (skip >= b.length) skip -= b.length;
            else {
              await this.#append(fh, b.subarray(skip));
              skip = 0;
            }
          }
        }
        this.#queuedBytes -= bytes;
      }
    } catch (err: unknown) {
      this.#writeError = err;
    } finally {
      this.#writing = false;
    }
  }

  async write(fragment: Buffer): Promise<void> {
    this.#dataBytes += fragment.length;
    if (this.#discarding) return;
    if (this.#dataBytes > this.o.maxBytes) {
      this.#discarding = true;
      await this.#dropFile();
      return;
    }
    if (this.#writeError !== undefined) {
      await this.#spoolFailed();
      return;
    }
    // Hashed here, in order, as the file will hold it: the meta first (written with the file's opening).
    this.#hashMeta();
    this.#hash.update(fragment);
    // The fragment is a view of the socket's chunk, which nothing reuses: it is kept until written.
    this.#queued.push(fragment);
    this.#queuedBytes += fragment.length;
    if (!this.#writing) {
      this.#writing = true;
      this.#writes = this.#drainQueue();
    }
    if (this.#queuedBytes > DEFAULT_SPOOL_WRITE_BEHIND_BYTES) await this.#writes;
  }

  #hashMeta(): void {
    if (this.#metaHashed) return;
    this.#metaHashed = true;
    this.#hash.update(this.o.meta);
  }

  /** Disk full or unwritable spool: the rest is read and dropped, the answer is 0xA700. */
  async #spoolFailed(): Promise<void> {
    this.o.logger.warn('could not spool C-STORE data set', { error: normalizeErrorString(this.#writeError) });
    this.#discarding = true;
    await this.#dropFile();
  }

  async end(): Promise<number> {
    this.#done = true;
    await this.#writes;
    if (this.#writeError !== undefined && !this.#discarding) await this.#spoolFailed();
    if (this.#discarding) {
      await this.#dropFile();
      if (this.#dataBytes > this.o.maxBytes) await this.o.tooLarge(this.#hash.digest('hex'), this.#dataBytes);
      return DimseStatus.OutOfResources;
    }
    try {
      this.#hashMeta();
      const fh = await this.#file();
      await fh.close();
      this.#fh = undefined;
      return await this.o.finish({ path: this.#path, sizeBytes: this.#size, sha256: this.#hash.digest('hex') });
    } catch (err: unknown) {
      this.o.logger.warn('C-STORE failed before the sink', { error: normalizeErrorString(err) });
      await rm(this.#path, { force: true }).catch(() => undefined);
      return DimseStatus.OutOfResources;
    }
  }

  async abort(): Promise<void> {
    if (this.#done) return;
    this.#done = true;
    await this.#dropFile();
  }

  async #dropFile(): Promise<void> {
    await this.#writes;
    const fh = this.#fh;
    this.#fh = undefined;
    if (fh) await (await fh.catch(() => undefined))?.close().catch(() => undefined);
    await rm(this.#path, { force: true }).catch(() => undefined);
  }
}
