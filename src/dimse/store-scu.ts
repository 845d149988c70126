import { LONG_VRS } from '../dicom/dataset.js';
import { TransferSyntax } from '../dicom/uids.js';
import { DicomError, ErrorCode, normalizeErrorString, RadScribeError } from '../errors.js';
import { childLogger, type Logger } from '../logger.js';
import { aeTitleProblem } from './ae-title.js';
import { CommandField, encodeCStoreRq, type Priority, parseResponse } from './dimse-command.js';
import type { PresentationContextRq } from './pdu.js';
import { PresentationContextResult } from './pdu.js';
import {
  DEFAULT_REQUESTOR_TIMEOUTS,
  isDimseAssociationError,
  type NegotiatedContext,
  RequestorAssociation,
  type RequestorTimeouts,
} from './requestor.js';

/**
 * C-STORE SCU (Storage Service Class, PS3.4 Annex B, SCU role; C-STORE PS3.7 §9.1.1), on the
 * shared requestor (requestor.ts). One association carries several instances (the draft SR and its
 * Encapsulated PDF companion): one presentation context is proposed per (SOP class, transfer
 * syntax) needed — the instance's own syntax and, when that is not Implicit VR Little Endian, the
 * default syntax every SCP must accept (PS3.5 §10.1) — and each instance goes in its own syntax
 * when accepted, else converted (dcmjs) to the one that was. Each C-STORE-RSP status is classified
 * per PS3.4 B.2.3, per instance: one refusal does not hide the other instance's success.
 */

/** What a C-STORE-RSP status (or its absence) means for the sender. Closed set. */
export const StoreOutcome = {
  /** 0x0000: stored. */
  Success: 'success',
  /** 0x0001, 0xBxxx: stored, with a warning worth recording (coercion, elements discarded). */
  Warning: 'warning',
  /** 0xA7xx out of resources, 0x0213 resource limitation, or no response at all: retry later. */
  Transient: 'transient',
  /** Anything else (0xA9xx, 0xCxxx, 0x0122, 0x0124, no accepted context…): a retry fails the same way. */
  Permanent: 'permanent',
} as const;
export type StoreOutcome = (typeof StoreOutcome)[keyof typeof StoreOutcome];

/** C-STORE statuses named in PS3.4 B.2.3 (Table B.2-1) and the PS3.7 Annex C general statuses. */
export const StoreStatus = {
  Success: 0x0000,
  /** PS3.7 C.1.3 generic warning. */
  Warning: 0x0001,
  /** Warning: Coercion of Data Elements. */
  CoercionOfDataElements: 0xb000,
  /** Warning: Elements Discarded. */
  ElementsDiscarded: 0xb006,
  /** Warning: Data Set does not match SOP Class. */
  DataSetDoesNotMatchSopClassWarning: 0xb007,
  /** Refused: Out of Resources (0xA7xx). */
  OutOfResources: 0xa700,
  /** Error: Data Set does not match SOP Class (0xA9xx). */
  DataSetDoesNotMatchSopClass: 0xa900,
  /** Error: Cannot understand (0xCxxx). */
  CannotUnderstand: 0xc000,
  /** PS3.7 C.4.2 Processing failure. */
  ProcessingFailure: 0x0110,
  /** PS3.7 C.5.5 Duplicate SOP instance. */
  DuplicateSopInstance: 0x0111,
  /** PS3.7 C.5.11 Invalid object instance. */
  InvalidObjectInstance: 0x0117,
  /** PS3.7 C.5.1 Refused: SOP class not supported. */
  SopClassNotSupported: 0x0122,
  /** PS3.7 C.5.18 Refused: Not authorized. */
  NotAuthorized: 0x0124,
  /** PS3.7 C.5.12 Duplicate invocation. */
  DuplicateInvocation: 0x0210,
  /** PS3.7 C.5.13 Unrecognized operation. */
  UnrecognizedOperation: 0x0211,
  /** PS3.7 C.5.14 Mistyped argument. */
  MistypedArgument: 0x0212,
  /** PS3.7 C.5.17 Resource limitation. */
  ResourceLimitation: 0x0213,
} as const;

export interface StatusClass {
  readonly outcome: StoreOutcome;
  /** The standard's name for the status, for logs and audit detail. */
  readonly meaning: string;
}

const NAMED: ReadonlyMap<number, StatusClass> = new Map<number, StatusClass>([
  [StoreStatus.Success, { outcome: StoreOutcome.Success, meaning: 'Success' }],
  [StoreStatus.Warning, { outcome: StoreOutcome.Warning, meaning: 'Warning' }],
  [StoreStatus.CoercionOfDataElements, { outcome: StoreOutcome.Warning, meaning: 'Coercion of Data Elements' }],
  [StoreStatus.ElementsDiscarded, { outcome: StoreOutcome.Warning, meaning: 'Elements Discarded' }],
  [
    StoreStatus.DataSetDoesNotMatchSopClassWarning,
    { outcome: StoreOutcome.Warning, meaning: 'Data Set does not match SOP Class (warning)' },
  ],
  [StoreStatus.ProcessingFailure, { outcome: StoreOutcome.Permanent, meaning: 'Processing failure' }],
  [StoreStatus.DuplicateSopInstance, { outcome: StoreOutcome.Permanent, meaning: 'Duplicate SOP instance' }],
  [StoreStatus.InvalidObjectInstance, { outcome: StoreOutcome.Permanent, meaning: 'Invalid object instance' }],
  [StoreStatus.SopClassNotSupported, { outcome: StoreOutcome.Permanent, meaning: 'SOP class not supported' }],
  [StoreStatus.NotAuthorized, { outcome: StoreOutcome.Permanent, meaning: 'Not authorized' }],
  [StoreStatus.DuplicateInvocation, { outcome: StoreOutcome.Permanent, meaning: 'Duplicate invocation' }],
  [StoreStatus.UnrecognizedOperation, { outcome: StoreOutcome.Permanent, meaning: 'Unrecognized operation' }],
  [StoreStatus.MistypedArgument, { outcome: StoreOutcome.Permanent, meaning: 'Mistyped argument' }],
  // A limitation of the SCP's resources now, not of the request (PS3.7 C.5.17): retry later.
  [StoreStatus.ResourceLimitation, { outcome: StoreOutcome.Transient, meaning: 'Resource limitation' }],
]);

/**
 * Classify a C-STORE-RSP status (PS3.4 B.2.3): ranges first for the Storage-specific families
 * (A7xx, A9xx, Cxxx, Bxxx), then the named general statuses of PS3.7 Annex C; any other value is a
 * failure we cannot expect a retry to fix. Pending (0xFF0x) or Cancel (0xFE00) are not C-STORE
 * statuses at all (PS3.7 Table 9.3-2), so they are permanent too.
 */
export function classifyStoreStatus(status: number): StatusClass {
  const named = NAMED.get(status);
  if (named) return named;
  const family = status & 0xff00;
  if (family === 0xa700) return { outcome: StoreOutcome.Transient, meaning: 'Refused: Out of Resources' };
  if (family === 0xa900)
    return { outcome: StoreOutcome.Permanent, meaning: 'Error: Data Set does not match SOP Class' };
  if ((status & 0xf000) === 0xc000) return { outcome: StoreOutcome.Permanent, meaning: 'Error: Cannot understand' };
  if ((status & 0xf000) === 0xb000) return { outcome: StoreOutcome.Warning, meaning: 'Warning' };
  return { outcome: StoreOutcome.Permanent, meaning: 'Failure' };
}

/** Whether an outcome means the instance is now on the SCP. */
export function isStored(outcome: StoreOutcome): boolean {
  return outcome === StoreOutcome.Success || outcome === StoreOutcome.Warning;
}

/** `0xA700` style, as PS3.4 writes statuses. */
export function formatStatus(status: number): string {
  return `0x${status.toString(16).padStart(4, '0').toUpperCase()}`;
}

export interface StoreTarget {
  readonly host: string;
  readonly port: number;
  readonly calledAeTitle: string;
}

export interface StoreScuOptions {
  readonly callingAeTitle: string;
  readonly timeouts?: Partial<RequestorTimeouts>;
  /** Our Maximum Length Received (PS3.8 D.1). */
  readonly maxPduLength?: number;
  readonly priority?: Priority;
  /** Per-instance outcomes (UIDs, statuses, AE titles; never data set content). */
  readonly logger?: Logger;
}

export const DEFAULT_STORE_SCU_TIMEOUTS: RequestorTimeouts = DEFAULT_REQUESTOR_TIMEOUTS;

/** The result of one instance of a storeInstances call. */
export interface StoreInstanceResult {
  readonly sopClassUid: string;
  readonly sopInstanceUid: string;
  readonly outcome: StoreOutcome;
  /** The C-STORE-RSP status, when one came. */
  readonly status?: number;
  /** The transfer syntax the instance went in, when it was sent. */
  readonly transferSyntax?: string;
  /** What happened, for logs and the export ledger (no PHI: statuses, UIDs, AE titles only). */
  readonly reason: string;
}

/** A Part 10 file split into what a C-STORE needs (PS3.10 §7.1: the File Meta is not sent). */
export interface StoreInstance {
  readonly sopClassUid: string;
  readonly sopInstanceUid: string;
  readonly transferSyntaxUid: string;
  /** The data set, in `transferSyntaxUid`, without preamble and File Meta Information. */
  readonly dataSet: Buffer;
}

/**
 * Split a Part 10 file (PS3.10 §7.1: preamble, "DICM", group 0002 in Explicit VR LE led by its
 * group length) into its identifying File Meta values and the data set bytes.
 */
export function splitPart10(part10: Uint8Array): StoreInstance {
  const b = Buffer.from(part10.buffer, part10.byteOffset, part10.byteLength);
  const bad = (why: string): DicomError =>
    new DicomError(ErrorCode.DicomInvalid, `C-STORE: not a Part 10 file: ${why}`);
  if (b.length < 144 || b.toString('latin1', 128, 132) !== 'DICM') throw bad('no DICM prefix');
  let off = 132;
  let end = -1;
  const meta = new Map<number, string>();
  while (off + 8 <= b.length && b.readUInt16LE(off) === 0x0002) {
    const elem = b.readUInt16LE(off + 2);
    const vr = b.toString('latin1', off + 4, off + 6);
    let len: number;
    let head: number;
    if (LONG_VRS.has(vr)) {
      if (off + 12 > b.length) throw bad('truncated File Meta');
      len = b.readUInt32LE(off + 8);
      head = 12;
    } else {
      len = b.readUInt16LE(off + 6);
      head = 8;
    }
    if (off + head + len > b.length) throw bad('File Meta element overruns the file');
    const value = b.subarray(off + head, off + head + len);
    if (elem === 0x0000 && len === 4) end = off + head + 4 + value.readUInt32LE(0);
    else meta.set(elem, value.toString('latin1').replace(/[\0 ]+$/, ''));
    off += head + len;
    if (end >= 0 && off >= end) break;
  }
  const sopClassUid = meta.get(0x0002);
  const sopInstanceUid = meta.get(0x0003);
  const transferSyntaxUid = meta.get(0x0010);
  if (!sopClassUid || !sopInstanceUid || !transferSyntaxUid)
    throw bad('File Meta lacks Media Storage SOP Class/Instance UID or Transfer Syntax UID');
  return { sopClassUid, sopInstanceUid, transferSyntaxUid, dataSet: b.subarray(off) };
}

const UNDEFINED_LENGTH = 0xffffffff;
const ITEM = 0xe000;
const ITEM_DELIMITATION = 0xe00d;
const SEQUENCE_DELIMITATION = 0xe0dd;

function tagAndLength(group: number, element: number, length: number): Buffer {
  const h = Buffer.alloc(8);
  h.writeUInt16LE(group, 0);
  h.writeUInt16LE(element, 2);
  h.writeUInt32LE(length, 4);
  return h;
}

/**
 * Explicit VR LE → Implicit VR LE, element by element (PS3.5 §7.1.2 → §7.1.3): the same tags and
 * value bytes (both little endian), each header rewritten to tag + 32-bit length, sequences and
 * items walked (their defined lengths recomputed, since a long-VR header shrinks from 12 to 8
 * bytes). Value bytes are never decoded, so text in any Specific Character Set passes unchanged —
 * a dcmjs read/write round trip does not keep that: it reads UTF-8 text as single bytes and writes
 * it back as UTF-8 (double encoding, seen against Orthanc). Group lengths (gggg,0000), retired in
 * data sets (PS3.5 §7.2), are dropped: they would be wrong after the rewrite.
 */
export function explicitToImplicit(dataSet: Buffer): Buffer {
  const bad = (why: string): DicomError =>
    new DicomError(ErrorCode.DicomInvalid, `C-STORE: cannot convert to Implicit VR LE: ${why}`);
  const walk = (off: number, end: number, until?: number): { out: Buffer[]; off: number } => {
    const out: Buffer[] = [];
    while (off < end) {
      if (off + 8 > end) throw bad('truncated element header');
      const group = dataSet.readUInt16LE(off);
      const element = dataSet.readUInt16LE(off + 2);
      if (group === 0xfffe) {
        const len = dataSet.readUInt32LE(off + 4);
        if (element === until) return { out, off: off + 8 };
        if (element !== ITEM) throw bad(`unexpected delimiter (FFFE,${element.toString(16).toUpperCase()})`);
        if (len === UNDEFINED_LENGTH) {
          const inner = walk(off + 8, end, ITEM_DELIMITATION);
          out.push(
            tagAndLength(0xfffe, ITEM, UNDEFINED_LENGTH),
            ...inner.out,
            tagAndLength(0xfffe, ITEM_DELIMITATION, 0),
          );
          off = inner.off;
        } else {
          if (off + 8 + len > end) throw bad('item overruns its sequence');
          const inner = Buffer.concat(walk(off + 8, off + 8 + len).out);
          out.push(tagAndLength(0xfffe, ITEM, inner.length), inner);
          off += 8 + len;
        }
        continue;
      }
      const vr = dataSet.toString('latin1', off + 4, off + 6);
      let len: number;
      let valueAt: number;
      if (LONG_VRS.has(vr)) {
        if (off + 12 > end) throw bad('truncated element header');
        len = dataSet.readUInt32LE(off + 8);
        valueAt = off + 12;
      } else {
        len = dataSet.readUInt16LE(off + 6);
        valueAt = off + 8;
      }
      if (vr === 'SQ') {
        if (len === UNDEFINED_LENGTH) {
          const inner = walk(valueAt, end, SEQUENCE_DELIMITATION);
          out.push(
            tagAndLength(group, element, UNDEFINED_LENGTH),
            ...inner.out,
            tagAndLength(0xfffe, SEQUENCE_DELIMITATION, 0),
          );
          off = inner.off;
        } else {
          if (valueAt + len > end) throw bad('sequence overruns its parent');
          const inner = Buffer.concat(walk(valueAt, valueAt + len).out);
          out.push(tagAndLength(group, element, inner.length), inner);
          off = valueAt + len;
        }
        continue;
      }
      // Undefined length outside SQ: encapsulated pixel data or UN holding an SQ (PS3.5 §6.2.2);
      // neither is in what we send (SR, Encapsulated PDF).
      if (len === UNDEFINED_LENGTH) throw bad(`undefined length on a ${vr} element`);
      if (valueAt + len > end) throw bad('element overruns its parent');
      if (element !== 0x0000) out.push(tagAndLength(group, element, len), dataSet.subarray(valueAt, valueAt + len));
      off = valueAt + len;
    }
    if (until !== undefined) throw bad('missing delimitation item');
    return { out, off };
  };
  return Buffer.concat(walk(0, dataSet.length).out);
}

/**
 * The instance's data set in `toTransferSyntax`: as it is, or Explicit VR LE rewritten to
 * Implicit VR LE for an SCP that accepted only the default syntax (PS3.5 §10.1; VRs then come
 * from the data dictionary on the receiving side, PS3.5 §A.1).
 */
export function convertDataSet(inst: StoreInstance, toTransferSyntax: string): StoreInstance {
  if (inst.transferSyntaxUid === toTransferSyntax) return inst;
  if (
    inst.transferSyntaxUid !== TransferSyntax.ExplicitVrLittleEndian ||
    toTransferSyntax !== TransferSyntax.ImplicitVrLittleEndian
  )
    throw new DicomError(
      ErrorCode.DicomUnsupported,
      `C-STORE: cannot convert ${inst.transferSyntaxUid} to ${toTransferSyntax}`,
    );
  return { ...inst, transferSyntaxUid: toTransferSyntax, dataSet: explicitToImplicit(inst.dataSet) };
}

/** The contexts to propose for `instances`: per SOP class, its instances' syntaxes, then Implicit VR LE. */
export function storePresentationContexts(instances: readonly StoreInstance[]): PresentationContextRq[] {
  const pairs: [string, string][] = [];
  const seen = new Set<string>();
  const add = (sop: string, ts: string): void => {
    const k = `${sop}|${ts}`;
    if (seen.has(k)) return;
    seen.add(k);
    pairs.push([sop, ts]);
  };
  for (const i of instances) {
    add(i.sopClassUid, i.transferSyntaxUid);
    // The fallback every SCP must accept (PS3.5 §10.1), when we can convert to it.
    if (i.transferSyntaxUid === TransferSyntax.ExplicitVrLittleEndian)
      add(i.sopClassUid, TransferSyntax.ImplicitVrLittleEndian);
  }
  if (pairs.length > 128)
    throw new RadScribeError(ErrorCode.Internal, 'C-STORE: more than 128 presentation contexts needed');
  // PS3.8 §9.3.2.2: odd IDs 1–255.
  return pairs.map(([abstractSyntax, ts], n) => ({ id: 2 * n + 1, abstractSyntax, transferSyntaxes: [ts] }));
}

/** The accepted context to send `inst` on: its own syntax first, then any we can convert to. */
function chooseContext(
  inst: StoreInstance,
  accepted: ReadonlyMap<number, NegotiatedContext>,
): NegotiatedContext | undefined {
  const forClass = [...accepted.values()].filter((c) => c.abstractSyntax === inst.sopClassUid);
  return (
    forClass.find((c) => c.transferSyntax === inst.transferSyntaxUid) ??
    (inst.transferSyntaxUid === TransferSyntax.ExplicitVrLittleEndian
      ? forClass.find((c) => c.transferSyntax === TransferSyntax.ImplicitVrLittleEndian)
      : undefined)
  );
}

const RESULT_NAMES: Readonly<Record<number, string>> = {
  [PresentationContextResult.UserRejection]: 'user-rejection',
  [PresentationContextResult.NoReason]: 'no-reason',
  [PresentationContextResult.AbstractSyntaxNotSupported]: 'abstract-syntax-not-supported',
  [PresentationContextResult.TransferSyntaxesNotSupported]: 'transfer-syntaxes-not-supported',
};

/**
 * Send `part10s` on one association to `target`, in order; one result per instance, in the same
 * order. Throws DimseAssociationError when no association could be made (connect, timeout,
 * A-ASSOCIATE-RJ): then nothing was sent. Once established, a lost association (A-ABORT, close,
 * DIMSE timeout) makes the instance in flight and those after it transient results; the
 * association is released at the end when still usable.
 */
export async function storeInstances(
  target: StoreTarget,
  part10s: readonly Uint8Array[],
  opts: StoreScuOptions,
): Promise<StoreInstanceResult[]> {
  for (const [what, ae] of [
    ['called', target.calledAeTitle],
    ['calling', opts.callingAeTitle],
  ] as const) {
    const why = aeTitleProblem(ae);
    if (why) throw new RadScribeError(ErrorCode.ConfigInvalid, `C-STORE: ${what} AE title: ${why}`);
  }
  const log = opts.logger ?? childLogger('dimse-store-scu', { calledAeTitle: target.calledAeTitle });
  const instances = part10s.map((p) => splitPart10(p));
  const contexts = storePresentationContexts(instances);
  const assoc = await RequestorAssociation.open({
    host: target.host,
    port: target.port,
    calledAeTitle: target.calledAeTitle,
    callingAeTitle: opts.callingAeTitle,
    presentationContexts: contexts,
    ...(opts.timeouts ? { timeouts: opts.timeouts } : {}),
    ...(opts.maxPduLength ? { maxPduLength: opts.maxPduLength } : {}),
  }).catch((err: unknown) => {
    log.warn('C-STORE association failed', {
      failure: isDimseAssociationError(err) ? err.failure : 'other',
      reason: normalizeErrorString(err),
      instances: instances.length,
    });
    throw err;
  });
  const results: StoreInstanceResult[] = [];
  try {
    for (const [n, inst] of instances.entries()) {
      const base = { sopClassUid: inst.sopClassUid, sopInstanceUid: inst.sopInstanceUid };
      if (!assoc.usable) {
        results.push({ ...base, outcome: StoreOutcome.Transient, reason: 'association lost before this instance' });
        continue;
      }
      const ctx = chooseContext(inst, assoc.accepted);
      if (!ctx) {
        // The SCP does not take this SOP class (or none of our syntaxes for it): PS3.8 Table 9-18.
        const why = contexts
          .filter((c) => c.abstractSyntax === inst.sopClassUid)
          .map((c) => `${c.transferSyntaxes[0]}: ${RESULT_NAMES[assoc.resultOf(c.id) ?? -1] ?? 'missing'}`)
          .join(', ');
        results.push({ ...base, outcome: StoreOutcome.Permanent, reason: `no presentation context accepted (${why})` });
        continue;
      }
      let send: StoreInstance;
      try {
        send = convertDataSet(inst, ctx.transferSyntax);
      } catch (err: unknown) {
        // A data set we cannot rewrite fails alone; the others still go.
        results.push({ ...base, outcome: StoreOutcome.Permanent, reason: normalizeErrorString(err) });
        continue;
      }
      const messageId = n + 1;
      try {
        const m = await assoc.request(
          ctx.id,
          encodeCStoreRq({
            messageId,
            affectedSopClassUid: inst.sopClassUid,
            affectedSopInstanceUid: inst.sopInstanceUid,
            ...(opts.priority !== undefined ? { priority: opts.priority } : {}),
          }),
          send.dataSet,
        );
        const rsp = parseResponse(m.command);
        if (
          rsp.commandField !== CommandField.CStoreRsp ||
          rsp.messageIdBeingRespondedTo !== messageId ||
          (rsp.affectedSopInstanceUid !== undefined && rsp.affectedSopInstanceUid !== inst.sopInstanceUid)
        ) {
          // Not the answer to this request: nothing on the association can be trusted any more.
          assoc.abort();
          results.push({
            ...base,
            outcome: StoreOutcome.Transient,
            transferSyntax: ctx.transferSyntax,
            reason: `unexpected response (command 0x${rsp.commandField.toString(16)}, message ${rsp.messageIdBeingRespondedTo})`,
          });
          continue;
        }
        if (rsp.status < 0) {
          results.push({
            ...base,
            outcome: StoreOutcome.Permanent,
            transferSyntax: ctx.transferSyntax,
            reason: 'C-STORE-RSP without a Status (0000,0900)',
          });
          continue;
        }
        const c = classifyStoreStatus(rsp.status);
        results.push({
          ...base,
          outcome: c.outcome,
          status: rsp.status,
          transferSyntax: ctx.transferSyntax,
          reason: `${formatStatus(rsp.status)} ${c.meaning}${rsp.errorComment ? ` (${rsp.errorComment.slice(0, 64)})` : ''}`,
        });
      } catch (err: unknown) {
        if (!isDimseAssociationError(err)) throw err;
        // No response: whether the SCP kept the instance is unknown; a retry re-sends the same UID.
        results.push({
          ...base,
          outcome: StoreOutcome.Transient,
          transferSyntax: ctx.transferSyntax,
          reason: err.message,
        });
      }
    }
  } finally {
    for (const r of results) {
      const fields = {
        sopInstanceUid: r.sopInstanceUid,
        sopClassUid: r.sopClassUid,
        outcome: r.outcome,
        ...(r.status !== undefined ? { status: formatStatus(r.status) } : {}),
        ...(r.transferSyntax ? { transferSyntax: r.transferSyntax } : {}),
        reason: r.reason,
      };
      if (isStored(r.outcome)) log.info('C-STORE instance stored', fields);
      else log.warn('C-STORE instance not stored', fields);
    }
    if (assoc.usable) {
      try {
        await assoc.release();
      } catch {
        // Every instance already has its answer; a release that fails changes none of them.
      }
    } else assoc.abort();
  }
  return results;
}
