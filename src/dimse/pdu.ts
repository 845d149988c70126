import { ApplicationContextName } from '../dicom/uids.js';
import { aeTitleField } from './ae-title.js';

/**
 * DICOM Upper Layer protocol data units (PS3.8 §9.3): encode and decode, with a length guard applied
 * before a PDU's body is buffered, and a typed error for every malformed PDU. Pure; no I/O.
 *
 * Every PDU starts with a 6-byte header: PDU-type (1), reserved (1), PDU-length (4, big endian).
 * Items inside A-ASSOCIATE-RQ/AC have a 4-byte header: item-type (1), reserved (1), item-length (2).
 */

/** PS3.8 §9.3.1 PDU types. */
export const PduType = {
  AssociateRq: 0x01,
  AssociateAc: 0x02,
  AssociateRj: 0x03,
  PData: 0x04,
  ReleaseRq: 0x05,
  ReleaseRp: 0x06,
  Abort: 0x07,
} as const;
export type PduType = (typeof PduType)[keyof typeof PduType];

/** PS3.8 §9.3.2–9.3.3 and Annex D item types. */
export const ItemType = {
  ApplicationContext: 0x10,
  PresentationContextRq: 0x20,
  PresentationContextAc: 0x21,
  AbstractSyntax: 0x30,
  TransferSyntax: 0x40,
  UserInformation: 0x50,
  MaximumLength: 0x51,
  ImplementationClassUid: 0x52,
  AsynchronousOperationsWindow: 0x53,
  RoleSelection: 0x54,
  ImplementationVersionName: 0x55,
} as const;

/** The DICOM Application Context Name (PS3.7 Annex A.2.1). */
export const DICOM_APPLICATION_CONTEXT: string = ApplicationContextName.Dicom;

/** PS3.8 Table 9-18: Presentation context results in an A-ASSOCIATE-AC. */
export const PresentationContextResult = {
  Acceptance: 0,
  UserRejection: 1,
  NoReason: 2,
  AbstractSyntaxNotSupported: 3,
  TransferSyntaxesNotSupported: 4,
} as const;
export type PresentationContextResult = (typeof PresentationContextResult)[keyof typeof PresentationContextResult];

/** PS3.8 Table 9-21: A-ASSOCIATE-RJ result, source and reason. */
export const RejectResult = { Permanent: 1, Transient: 2 } as const;
export const RejectSource = { ServiceUser: 1, ServiceProviderAcse: 2, ServiceProviderPresentation: 3 } as const;
/** Reasons when the source is the service user (1). */
export const RejectUserReason = {
  NoReasonGiven: 1,
  ApplicationContextNameNotSupported: 2,
  CallingAeTitleNotRecognized: 3,
  CalledAeTitleNotRecognized: 7,
} as const;
/** Reasons when the source is the service provider, ACSE (2). */
export const RejectAcseReason = { NoReasonGiven: 1, ProtocolVersionNotSupported: 2 } as const;
/** Reasons when the source is the service provider, presentation (3). */
export const RejectPresentationReason = { TemporaryCongestion: 1, LocalLimitExceeded: 2 } as const;

/** PS3.8 Table 9-26: A-ABORT source and (for source 2) reason. */
export const AbortSource = { ServiceUser: 0, ServiceProvider: 2 } as const;
export const AbortReason = {
  NotSpecified: 0,
  UnrecognizedPdu: 1,
  UnexpectedPdu: 2,
  UnrecognizedPduParameter: 4,
  UnexpectedPduParameter: 5,
  InvalidPduParameterValue: 6,
} as const;
export type AbortReason = (typeof AbortReason)[keyof typeof AbortReason];

/** Why a PDU was refused; each maps to an A-ABORT reason (PS3.8 Table 9-26). Closed set. */
export const PduFailure = {
  UnknownType: 'unknown-pdu-type',
  TooLong: 'pdu-too-long',
  Malformed: 'malformed-pdu',
} as const;
export type PduFailure = (typeof PduFailure)[keyof typeof PduFailure];

export class PduError extends Error {
  override name = 'PduError' as const;
  constructor(
    readonly failure: PduFailure,
    message: string,
    /** The A-ABORT reason to send for it. */
    readonly abortReason: AbortReason = failure === PduFailure.UnknownType
      ? AbortReason.UnrecognizedPdu
      : AbortReason.InvalidPduParameterValue,
  ) {
    super(message);
  }
}

export function isPduError(err: unknown): err is PduError {
  return err instanceof PduError;
}

export interface PresentationContextRq {
  readonly id: number;
  readonly abstractSyntax: string;
  readonly transferSyntaxes: readonly string[];
}

export interface PresentationContextAc {
  readonly id: number;
  readonly result: PresentationContextResult;
  /** The accepted transfer syntax; for a rejected context, any value (PS3.8 §9.3.3.2: not tested). */
  readonly transferSyntax: string;
}

export interface UserInformation {
  /** Maximum-length-received (PS3.8 D.1): 0 = no limit. */
  readonly maxPduLength: number;
  readonly implementationClassUid: string;
  readonly implementationVersionName?: string;
}

export interface AssociateRq {
  readonly type: typeof PduType.AssociateRq;
  readonly protocolVersion: number;
  readonly calledAeTitle: string;
  readonly callingAeTitle: string;
  readonly applicationContext: string;
  readonly presentationContexts: readonly PresentationContextRq[];
  readonly userInformation: UserInformation;
}

export interface AssociateAc {
  readonly type: typeof PduType.AssociateAc;
  readonly protocolVersion: number;
  readonly calledAeTitle: string;
  readonly callingAeTitle: string;
  readonly applicationContext: string;
  readonly presentationContexts: readonly PresentationContextAc[];
  readonly userInformation: UserInformation;
}

export interface AssociateRj {
  readonly type: typeof PduType.AssociateRj;
  readonly result: number;
  readonly source: number;
  readonly reason: number;
}

/** One presentation data value (PS3.8 §9.3.5.1, Annex E.2). */
export interface Pdv {
  readonly contextId: number;
  /** Message control header bit 0: command (true) or data set (false). */
  readonly command: boolean;
  /** Bit 1: the last fragment of the command or data set. */
  readonly last: boolean;
  readonly fragment: Buffer;
}

export interface PData {
  readonly type: typeof PduType.PData;
  readonly pdvs: readonly Pdv[];
}

export interface ReleaseRq {
  readonly type: typeof PduType.ReleaseRq;
}
export interface ReleaseRp {
  readonly type: typeof PduType.ReleaseRp;
}
export interface Abort {
  readonly type: typeof PduType.Abort;
  readonly source: number;
  readonly reason: number;
}

export type Pdu = AssociateRq | AssociateAc | AssociateRj | PData | ReleaseRq | ReleaseRp | Abort;

const PDU_HEADER_BYTES = 6;
const KNOWN_TYPES: ReadonlySet<number> = new Set(Object.values(PduType));

// ---------- encoding ----------

function header(type: PduType, bodyLength: number): Buffer {
  const h = Buffer.alloc(PDU_HEADER_BYTES);
  h.writeUInt8(type, 0);
  h.writeUInt32BE(bodyLength, 2);
  return h;
}

function item(type: number, value: Buffer): Buffer {
  if (value.length > 0xffff) throw new RangeError(`item 0x${type.toString(16)} longer than 65535 bytes`);
  const h = Buffer.alloc(4);
  h.writeUInt8(type, 0);
  h.writeUInt16BE(value.length, 2);
  return Buffer.concat([h, value]);
}

/** UIDs in PDU items are not padded (PS3.8 §9.3.2.2, Annex F). */
function uidItem(type: number, uid: string): Buffer {
  return item(type, Buffer.from(uid, 'latin1'));
}

function userInformationItem(u: UserInformation): Buffer {
  const max = Buffer.alloc(4);
  max.writeUInt32BE(u.maxPduLength, 0);
  const subs = [item(ItemType.MaximumLength, max), uidItem(ItemType.ImplementationClassUid, u.implementationClassUid)];
  if (u.implementationVersionName)
    subs.push(item(ItemType.ImplementationVersionName, Buffer.from(u.implementationVersionName, 'latin1')));
  return item(ItemType.UserInformation, Buffer.concat(subs));
}

function associateFixed(protocolVersion: number, called: string, calling: string): Buffer {
  const v = Buffer.alloc(4);
  v.writeUInt16BE(protocolVersion, 0);
  return Buffer.concat([v, aeTitleField(called), aeTitleField(calling), Buffer.alloc(32)]);
}

export function encodePdu(pdu: Pdu): Buffer {
  let body: Buffer;
  switch (pdu.type) {
    case PduType.AssociateRq:
      body = Buffer.concat([
        associateFixed(pdu.protocolVersion, pdu.calledAeTitle, pdu.callingAeTitle),
        uidItem(ItemType.ApplicationContext, pdu.applicationContext),
        ...pdu.presentationContexts.map((pc) =>
          item(
            ItemType.PresentationContextRq,
            Buffer.concat([
              Buffer.from([pc.id, 0, 0, 0]),
              uidItem(ItemType.AbstractSyntax, pc.abstractSyntax),
              ...pc.transferSyntaxes.map((ts) => uidItem(ItemType.TransferSyntax, ts)),
            ]),
          ),
        ),
        userInformationItem(pdu.userInformation),
      ]);
      break;
    case PduType.AssociateAc:
      body = Buffer.concat([
        associateFixed(pdu.protocolVersion, pdu.calledAeTitle, pdu.callingAeTitle),
        uidItem(ItemType.ApplicationContext, pdu.applicationContext),
        ...pdu.presentationContexts.map((pc) =>
          item(
            ItemType.PresentationContextAc,
            Buffer.concat([Buffer.from([pc.id, 0, pc.result, 0]), uidItem(ItemType.TransferSyntax, pc.transferSyntax)]),
          ),
        ),
        userInformationItem(pdu.userInformation),
      ]);
      break;
    case PduType.AssociateRj:
      body = Buffer.from([0, pdu.result, pdu.source, pdu.reason]);
      break;
    case PduType.PData:
      body = Buffer.concat(
        pdu.pdvs.flatMap((pdv) => {
          const h = Buffer.alloc(6);
          h.writeUInt32BE(pdv.fragment.length + 2, 0);
          h.writeUInt8(pdv.contextId, 4);
          h.writeUInt8((pdv.command ? 1 : 0) | (pdv.last ? 2 : 0), 5);
          return [h, pdv.fragment];
        }),
      );
      break;
    case PduType.ReleaseRq:
    case PduType.ReleaseRp:
      body = Buffer.alloc(4);
      break;
    case PduType.Abort:
      body = Buffer.from([0, 0, pdu.source, pdu.reason]);
      break;
  }
  return Buffer.concat([header(pdu.type, body.length), body]);
}

// ---------- decoding ----------

function malformed(message: string, reason: AbortReason = AbortReason.InvalidPduParameterValue): PduError {
  return new PduError(PduFailure.Malformed, message, reason);
}

/** A UID or AE value from an item: trailing NUL/space padding dropped (PS3.8 Annex F tolerates it). */
function text(b: Buffer): string {
  return b.toString('latin1').replace(/[\0 ]+$/, '');
}

interface RawItem {
  readonly type: number;
  readonly value: Buffer;
}

function items(b: Buffer, where: string): RawItem[] {
  const out: RawItem[] = [];
  let off = 0;
  while (off < b.length) {
    if (off + 4 > b.length) throw malformed(`${where}: truncated item header at offset ${off}`);
    const type = b.readUInt8(off);
    const len = b.readUInt16BE(off + 2);
    if (off + 4 + len > b.length) throw malformed(`${where}: item 0x${type.toString(16)} runs past its parent`);
    out.push({ type, value: b.subarray(off + 4, off + 4 + len) });
    off += 4 + len;
  }
  return out;
}

function decodeUserInformation(b: Buffer): UserInformation {
  let maxPduLength: number | undefined;
  let implementationClassUid = '';
  let implementationVersionName: string | undefined;
  for (const sub of items(b, 'user information')) {
    if (sub.type === ItemType.MaximumLength) {
      if (sub.value.length !== 4) throw malformed('maximum length sub-item must be 4 bytes');
      maxPduLength = sub.value.readUInt32BE(0);
    } else if (sub.type === ItemType.ImplementationClassUid) implementationClassUid = text(sub.value);
    else if (sub.type === ItemType.ImplementationVersionName) implementationVersionName = text(sub.value);
    // Other sub-items (asynchronous operations, role selection, extended negotiation, user identity)
    // are not negotiated: we answer as if they were absent (PS3.7 D.3.3).
  }
  // PS3.8 D.1: the maximum length sub-item is mandatory in both RQ and AC.
  if (maxPduLength === undefined) throw malformed('user information without a maximum length sub-item');
  return {
    maxPduLength,
    implementationClassUid,
    ...(implementationVersionName !== undefined ? { implementationVersionName } : {}),
  };
}

function decodeAssociate(type: 0x01 | 0x02, body: Buffer): AssociateRq | AssociateAc {
  if (body.length < 68) throw malformed('A-ASSOCIATE PDU shorter than its 68-byte fixed part');
  const protocolVersion = body.readUInt16BE(0);
  const calledAeTitle = body.subarray(4, 20).toString('latin1').trim();
  const callingAeTitle = body.subarray(20, 36).toString('latin1').trim();
  let applicationContext: string | undefined;
  const rqContexts: PresentationContextRq[] = [];
  const acContexts: PresentationContextAc[] = [];
  let userInformation: UserInformation | undefined;
  for (const it of items(body.subarray(68), 'A-ASSOCIATE')) {
    switch (it.type) {
      case ItemType.ApplicationContext:
        applicationContext = text(it.value);
        break;
      case ItemType.PresentationContextRq: {
        if (type !== PduType.AssociateRq) throw malformed('presentation context 0x20 item in an A-ASSOCIATE-AC');
        if (it.value.length < 4) throw malformed('presentation context item shorter than 4 bytes');
        const id = it.value.readUInt8(0);
        // PS3.8 §9.3.2.2: odd integers 1–255.
        if (id % 2 === 0) throw malformed(`presentation context ID ${id} is not odd`);
        let abstractSyntax: string | undefined;
        const transferSyntaxes: string[] = [];
        for (const sub of items(it.value.subarray(4), 'presentation context')) {
          if (sub.type === ItemType.AbstractSyntax) {
            if (abstractSyntax !== undefined) throw malformed(`presentation context ${id}: two abstract syntaxes`);
            abstractSyntax = text(sub.value);
          } else if (sub.type === ItemType.TransferSyntax) transferSyntaxes.push(text(sub.value));
          else throw malformed(`presentation context ${id}: unexpected sub-item 0x${sub.type.toString(16)}`);
        }
        if (abstractSyntax === undefined || transferSyntaxes.length === 0)
          throw malformed(`presentation context ${id}: needs one abstract syntax and at least one transfer syntax`);
        if (rqContexts.some((pc) => pc.id === id)) throw malformed(`presentation context ID ${id} used twice`);
        rqContexts.push({ id, abstractSyntax, transferSyntaxes });
        break;
      }
      case ItemType.PresentationContextAc: {
        if (type !== PduType.AssociateAc) throw malformed('presentation context 0x21 item in an A-ASSOCIATE-RQ');
        if (it.value.length < 4) throw malformed('presentation context item shorter than 4 bytes');
        const id = it.value.readUInt8(0);
        const result = it.value.readUInt8(2) as PresentationContextResult;
        let transferSyntax = '';
        for (const sub of items(it.value.subarray(4), 'presentation context'))
          if (sub.type === ItemType.TransferSyntax) transferSyntax = text(sub.value);
        acContexts.push({ id, result, transferSyntax });
        break;
      }
      case ItemType.UserInformation:
        userInformation = decodeUserInformation(it.value);
        break;
      default:
        throw malformed(
          `A-ASSOCIATE: unknown item type 0x${it.type.toString(16)}`,
          AbortReason.UnrecognizedPduParameter,
        );
    }
  }
  if (applicationContext === undefined) throw malformed('A-ASSOCIATE without an application context item');
  if (userInformation === undefined) throw malformed('A-ASSOCIATE without a user information item');
  if (type === PduType.AssociateRq) {
    if (rqContexts.length === 0) throw malformed('A-ASSOCIATE-RQ without a presentation context');
    return {
      type,
      protocolVersion,
      calledAeTitle,
      callingAeTitle,
      applicationContext,
      presentationContexts: rqContexts,
      userInformation,
    };
  }
  return {
    type,
    protocolVersion,
    calledAeTitle,
    callingAeTitle,
    applicationContext,
    presentationContexts: acContexts,
    userInformation,
  };
}

function decodePData(body: Buffer): PData {
  const pdvs: Pdv[] = [];
  let off = 0;
  while (off < body.length) {
    if (off + 6 > body.length) throw malformed('P-DATA-TF: truncated PDV item header');
    const len = body.readUInt32BE(off);
    // The item length counts the context ID and the message control header (PS3.8 §9.3.5.1).
    if (len < 2 || off + 4 + len > body.length) throw malformed('P-DATA-TF: PDV item length out of range');
    const contextId = body.readUInt8(off + 4);
    const mch = body.readUInt8(off + 5);
    if ((mch & 0xfc) !== 0) throw malformed('P-DATA-TF: reserved message control header bits set');
    pdvs.push({
      contextId,
      command: (mch & 1) === 1,
      last: (mch & 2) === 2,
      fragment: body.subarray(off + 6, off + 4 + len),
    });
    off += 4 + len;
  }
  if (pdvs.length === 0) throw malformed('P-DATA-TF without a PDV item');
  return { type: PduType.PData, pdvs };
}

/** Decode one whole PDU (header included). */
export function decodePdu(buf: Buffer): Pdu {
  if (buf.length < PDU_HEADER_BYTES) throw malformed('PDU shorter than its header');
  const type = buf.readUInt8(0);
  const len = buf.readUInt32BE(2);
  if (buf.length !== PDU_HEADER_BYTES + len) throw malformed('PDU length does not match its bytes');
  const body = buf.subarray(PDU_HEADER_BYTES);
  switch (type) {
    case PduType.AssociateRq:
    case PduType.AssociateAc:
      return decodeAssociate(type, body);
    case PduType.AssociateRj:
      if (len !== 4) throw malformed('A-ASSOCIATE-RJ length must be 4');
      return { type, result: body.readUInt8(1), source: body.readUInt8(2), reason: body.readUInt8(3) };
    case PduType.PData:
      return decodePData(body);
    case PduType.ReleaseRq:
    case PduType.ReleaseRp:
      if (len !== 4) throw malformed(`A-RELEASE PDU length must be 4`);
      return { type };
    case PduType.Abort:
      if (len !== 4) throw malformed('A-ABORT length must be 4');
      return { type, source: body.readUInt8(2), reason: body.readUInt8(3) };
    default:
      throw new PduError(PduFailure.UnknownType, `unknown PDU type 0x${type.toString(16)}`);
  }
}

export interface PduReaderLimits {
  /**
   * Largest P-DATA-TF PDU body accepted: our advertised Maximum Length Received (PS3.8 D.1). PS3.8
   * bounds the PDV lists by it; a sender that ignores it is refused before its body is buffered.
   */
  readonly maxPduLength: number;
  /** Largest body of any other PDU (an A-ASSOCIATE-RQ with many contexts is a few KiB). */
  readonly maxControlPduLength: number;
}

/** The Maximum Length Received we advertise unless configured (config `dimse.maxPduLength`). */
export const DEFAULT_MAX_PDU_LENGTH = 256 * 1024;

export const DEFAULT_PDU_READER_LIMITS: PduReaderLimits = { maxPduLength: 256 * 1024, maxControlPduLength: 64 * 1024 };

/**
 * Splits a byte stream into PDUs. At most one PDU (bounded by the limits) plus the last chunk read
 * is held; the length guard runs as soon as the 6-byte header is in, before the body arrives.
 */
export class PduReader {
  #chunks: Buffer[] = [];
  #buffered = 0;
  constructor(private readonly limits: PduReaderLimits = DEFAULT_PDU_READER_LIMITS) {}

  /** Bytes held but not yet returned as a PDU. */
  get buffered(): number {
    return this.#buffered;
  }

  push(chunk: Buffer): void {
    this.#chunks.push(chunk);
    this.#buffered += chunk.length;
  }

  /** The next whole PDU, or undefined when more bytes are needed. Throws PduError. */
  next(): Pdu | undefined {
    if (this.#buffered < PDU_HEADER_BYTES) return undefined;
    const head = this.#peek(PDU_HEADER_BYTES);
    const type = head.readUInt8(0);
    const len = head.readUInt32BE(2);
    if (!KNOWN_TYPES.has(type)) throw new PduError(PduFailure.UnknownType, `unknown PDU type 0x${type.toString(16)}`);
    const limit = type === PduType.PData ? this.limits.maxPduLength : this.limits.maxControlPduLength;
    // 0 = "no limit" on the wire (D.1), but never for what we buffer.
    if (limit > 0 && len > limit)
      throw new PduError(
        PduFailure.TooLong,
        `PDU type 0x${type.toString(16)} of ${len} bytes exceeds the limit of ${limit}`,
      );
    const total = PDU_HEADER_BYTES + len;
    if (this.#buffered < total) return undefined;
    return decodePdu(this.#take(total));
  }

  #peek(n: number): Buffer {
    const first = this.#chunks[0] as Buffer;
    if (first.length >= n) return first.subarray(0, n);
    const all = Buffer.concat(this.#chunks);
    this.#chunks = [all];
    return all.subarray(0, n);
  }

  #take(n: number): Buffer {
    const all = this.#chunks.length === 1 ? (this.#chunks[0] as Buffer) : Buffer.concat(this.#chunks);
    const out = all.subarray(0, n);
    const rest = all.subarray(n);
    this.#chunks = rest.length > 0 ? [rest] : [];
    this.#buffered = rest.length;
    return out;
  }
}

/** Bytes of a PDV item's header inside a P-DATA-TF: item length (4), context ID (1), control header (1). */
export const PDV_HEADER_BYTES = 6;

/**
 * Split one command or data set into P-DATA-TF PDUs of one PDV each, every PDU within the peer's
 * Maximum Length Received (PS3.8 D.1: it bounds the PDU's variable field, i.e. PDV header plus
 * fragment). `peerMaxPduLength` 0 means the peer set no limit (D.1); we then send fragments of
 * `fallbackMaxPduLength`, so one huge data set is never one huge buffer on the wire. The last PDV
 * has the last-fragment bit set (PS3.8 E.2). An empty value still yields one (empty, last) PDV.
 */
export function fragmentPData(
  contextId: number,
  command: boolean,
  bytes: Buffer,
  peerMaxPduLength: number,
  fallbackMaxPduLength: number = DEFAULT_MAX_PDU_LENGTH,
): PData[] {
  const max = peerMaxPduLength > 0 ? peerMaxPduLength : fallbackMaxPduLength;
  // A peer advertising less than a PDV header plus one byte is broken; send 1-byte fragments anyway.
  const room = Math.max(max - PDV_HEADER_BYTES, 1);
  const out: PData[] = [];
  let off = 0;
  do {
    const fragment = bytes.subarray(off, off + room);
    off += room;
    out.push({ type: PduType.PData, pdvs: [{ contextId, command, last: off >= bytes.length, fragment }] });
  } while (off < bytes.length);
  return out;
}
