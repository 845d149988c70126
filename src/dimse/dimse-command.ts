/**
 * DIMSE command sets (PS3.7 §9.3, §E): group 0000 elements, always in Implicit VR Little Endian
 * (PS3.7 §6.3.1), led by Command Group Length (0000,0000). Encoded and decoded by hand: the command
 * group is a flat list of a dozen known elements, and its VRs come from PS3.7 Annex E.1.
 */

/** PS3.7 Annex E.1 Command Field (0000,0100) values. */
export const CommandField = {
  CStoreRq: 0x0001,
  CStoreRsp: 0x8001,
  CFindRq: 0x0020,
  CGetRq: 0x0010,
  CMoveRq: 0x0021,
  CEchoRq: 0x0030,
  CEchoRsp: 0x8030,
  CFindRsp: 0x8020,
  CGetRsp: 0x8010,
  CMoveRsp: 0x8021,
  CCancelRq: 0x0fff,
} as const;
export type CommandField = (typeof CommandField)[keyof typeof CommandField];

/** PS3.7 Annex C and PS3.4 B.2.3 statuses used by the Verification and Storage services. */
export const DimseStatus = {
  Success: 0x0000,
  /** Refused: Out of Resources (PS3.4 B.2.3). */
  OutOfResources: 0xa700,
  /** Error: Data Set does not match SOP Class (PS3.4 B.2.3). */
  DataSetDoesNotMatchSopClass: 0xa900,
  /** Error: Cannot understand (PS3.4 B.2.3). */
  CannotUnderstand: 0xc000,
  /** Processing failure (PS3.7 C.4.2). */
  ProcessingFailure: 0x0110,
  /** Unrecognized operation (PS3.7 C.4.3). */
  UnrecognizedOperation: 0x0211,
  /** SOP class not supported (PS3.7 C.5.1). */
  SopClassNotSupported: 0x0122,
} as const;

/** Command Data Set Type (0000,0800): 0x0101 means no data set follows (PS3.7 E.1). */
export const NO_DATA_SET = 0x0101;
/** Any other value means a data set follows; 0x0000 is what we send (DCMTK does the same). */
export const DATA_SET_PRESENT = 0x0000;

/** Command element tags (group 0000), as (element) numbers; VR per PS3.7 Annex E.1. */
export const CommandTag = {
  CommandGroupLength: 0x0000, // UL
  AffectedSopClassUid: 0x0002, // UI
  RequestedSopClassUid: 0x0003, // UI
  CommandField: 0x0100, // US
  MessageId: 0x0110, // US
  MessageIdBeingRespondedTo: 0x0120, // US
  MoveDestination: 0x0600, // AE
  Priority: 0x0700, // US
  CommandDataSetType: 0x0800, // US
  Status: 0x0900, // US
  OffendingElement: 0x0901, // AT
  ErrorComment: 0x0902, // LO
  ErrorId: 0x0903, // US
  AffectedSopInstanceUid: 0x1000, // UI
  RequestedSopInstanceUid: 0x1001, // UI
  NumberOfRemainingSuboperations: 0x1020, // US
  NumberOfCompletedSuboperations: 0x1021, // US
  NumberOfFailedSuboperations: 0x1022, // US
  NumberOfWarningSuboperations: 0x1023, // US
  MoveOriginatorApplicationEntityTitle: 0x1030, // AE
  MoveOriginatorMessageId: 0x1031, // US
} as const;

type Vr = 'UL' | 'US' | 'UI' | 'AE' | 'LO' | 'AT';
const VR_OF: ReadonlyMap<number, Vr> = new Map<number, Vr>([
  [CommandTag.CommandGroupLength, 'UL'],
  [CommandTag.AffectedSopClassUid, 'UI'],
  [CommandTag.RequestedSopClassUid, 'UI'],
  [CommandTag.CommandField, 'US'],
  [CommandTag.MessageId, 'US'],
  [CommandTag.MessageIdBeingRespondedTo, 'US'],
  [CommandTag.MoveDestination, 'AE'],
  [CommandTag.Priority, 'US'],
  [CommandTag.CommandDataSetType, 'US'],
  [CommandTag.Status, 'US'],
  [CommandTag.OffendingElement, 'AT'],
  [CommandTag.ErrorComment, 'LO'],
  [CommandTag.ErrorId, 'US'],
  [CommandTag.AffectedSopInstanceUid, 'UI'],
  [CommandTag.RequestedSopInstanceUid, 'UI'],
  [CommandTag.NumberOfRemainingSuboperations, 'US'],
  [CommandTag.NumberOfCompletedSuboperations, 'US'],
  [CommandTag.NumberOfFailedSuboperations, 'US'],
  [CommandTag.NumberOfWarningSuboperations, 'US'],
  [CommandTag.MoveOriginatorApplicationEntityTitle, 'AE'],
  [CommandTag.MoveOriginatorMessageId, 'US'],
]);

/** A decoded command set: numbers for US/UL, strings for UI/AE/LO, raw bytes for anything else. */
export type CommandSet = ReadonlyMap<number, number | string | Buffer>;

export class DimseCommandError extends Error {
  override name = 'DimseCommandError' as const;
}

/** Largest command set accepted (all its fragments together); real ones are a few hundred bytes. */
export const MAX_COMMAND_SET_BYTES = 64 * 1024;

/** Decode a command set (PS3.7 §6.3.1: Implicit VR Little Endian, group 0000 only). */
export function decodeCommandSet(b: Buffer): CommandSet {
  const out = new Map<number, number | string | Buffer>();
  let off = 0;
  while (off < b.length) {
    if (off + 8 > b.length) throw new DimseCommandError('command set: truncated element header');
    const group = b.readUInt16LE(off);
    const element = b.readUInt16LE(off + 2);
    const len = b.readUInt32LE(off + 4);
    if (group !== 0x0000) throw new DimseCommandError(`command set: element of group ${group.toString(16)}`);
    if (len === 0xffffffff || off + 8 + len > b.length)
      throw new DimseCommandError(`command set: element (0000,${element.toString(16).padStart(4, '0')}) overruns`);
    const v = b.subarray(off + 8, off + 8 + len);
    const vr = VR_OF.get(element);
    if (vr === 'US') {
      if (len !== 2) throw new DimseCommandError(`command set: US element of ${len} bytes`);
      out.set(element, v.readUInt16LE(0));
    } else if (vr === 'UL') {
      if (len !== 4) throw new DimseCommandError(`command set: UL element of ${len} bytes`);
      out.set(element, v.readUInt32LE(0));
    } else if (vr === 'UI' || vr === 'AE' || vr === 'LO') {
      // UI padded with NUL, AE/LO with space (PS3.5 §6.2).
      out.set(
        element,
        v
          .toString('latin1')
          .replace(/[\0 ]+$/, '')
          .replace(/^ +/, ''),
      );
    } else out.set(element, Buffer.from(v));
    off += 8 + len;
  }
  if (out.get(CommandTag.CommandField) === undefined)
    throw new DimseCommandError('command set without Command Field (0000,0100)');
  return out;
}

function element(tag: number, value: number | string, vr: Vr): Buffer {
  let v: Buffer;
  if (vr === 'US') {
    v = Buffer.alloc(2);
    v.writeUInt16LE(value as number, 0);
  } else if (vr === 'UL') {
    v = Buffer.alloc(4);
    v.writeUInt32LE(value as number, 0);
  } else {
    const s = String(value);
    const pad = s.length % 2 === 1 ? (vr === 'UI' ? '\0' : ' ') : '';
    v = Buffer.from(s + pad, 'latin1');
  }
  const h = Buffer.alloc(8);
  h.writeUInt16LE(0x0000, 0);
  h.writeUInt16LE(tag, 2);
  h.writeUInt32LE(v.length, 4);
  return Buffer.concat([h, v]);
}

/**
 * Encode a command set: elements in ascending tag order (PS3.5 §7.1), led by Command Group Length
 * (the byte count of the elements after it).
 */
export function encodeCommandSet(
  fields: ReadonlyMap<number, number | string> | Record<number, number | string>,
): Buffer {
  const entries = (
    fields instanceof Map ? [...fields.entries()] : Object.entries(fields).map(([k, v]) => [Number(k), v])
  )
    .filter(([tag]) => tag !== CommandTag.CommandGroupLength)
    .sort((a, b) => (a[0] as number) - (b[0] as number)) as [number, number | string][];
  const body = Buffer.concat(
    entries.map(([tag, value]) => {
      const vr = VR_OF.get(tag);
      if (!vr || vr === 'AT') throw new DimseCommandError(`cannot encode command element (0000,${tag.toString(16)})`);
      return element(tag, value, vr);
    }),
  );
  return Buffer.concat([element(CommandTag.CommandGroupLength, body.length, 'UL'), body]);
}

export interface CEchoRq {
  readonly commandField: typeof CommandField.CEchoRq;
  readonly messageId: number;
  readonly affectedSopClassUid: string;
}

export interface CStoreRq {
  readonly commandField: typeof CommandField.CStoreRq;
  readonly messageId: number;
  readonly affectedSopClassUid: string;
  readonly affectedSopInstanceUid: string;
  readonly priority: number;
  readonly moveOriginatorAeTitle?: string;
  readonly moveOriginatorMessageId?: number;
}

export interface DimseResponse {
  readonly commandField: number;
  readonly messageIdBeingRespondedTo: number;
  readonly status: number;
  readonly affectedSopClassUid?: string;
  readonly affectedSopInstanceUid?: string;
  /** Error Comment (0000,0902), when the peer gave one (PS3.7 C.4). */
  readonly errorComment?: string;
}

function str(c: CommandSet, tag: number): string | undefined {
  const v = c.get(tag);
  return typeof v === 'string' ? v : undefined;
}
function num(c: CommandSet, tag: number): number | undefined {
  const v = c.get(tag);
  return typeof v === 'number' ? v : undefined;
}

/** Whether a data set follows this command (PS3.7 E.1 Command Data Set Type). */
export function hasDataSet(c: CommandSet): boolean {
  const t = num(c, CommandTag.CommandDataSetType);
  return t !== undefined && t !== NO_DATA_SET;
}

export function commandFieldOf(c: CommandSet): number {
  return num(c, CommandTag.CommandField) ?? -1;
}

/** The request a command set holds, for the requests we serve; throws DimseCommandError if incomplete. */
export function parseRequest(c: CommandSet): CEchoRq | CStoreRq {
  const field = commandFieldOf(c);
  const messageId = num(c, CommandTag.MessageId);
  const sopClass = str(c, CommandTag.AffectedSopClassUid);
  if (messageId === undefined) throw new DimseCommandError('request without Message ID (0000,0110)');
  if (field === CommandField.CEchoRq) {
    return { commandField: field, messageId, affectedSopClassUid: sopClass ?? '' };
  }
  if (field === CommandField.CStoreRq) {
    const sopInstance = str(c, CommandTag.AffectedSopInstanceUid);
    if (!sopClass || !sopInstance)
      throw new DimseCommandError('C-STORE-RQ without Affected SOP Class/Instance UID (0000,0002)/(0000,1000)');
    if (!hasDataSet(c)) throw new DimseCommandError('C-STORE-RQ without a data set');
    const origin = str(c, CommandTag.MoveOriginatorApplicationEntityTitle);
    const originId = num(c, CommandTag.MoveOriginatorMessageId);
    return {
      commandField: field,
      messageId,
      affectedSopClassUid: sopClass,
      affectedSopInstanceUid: sopInstance,
      priority: num(c, CommandTag.Priority) ?? 0,
      ...(origin ? { moveOriginatorAeTitle: origin } : {}),
      ...(originId !== undefined ? { moveOriginatorMessageId: originId } : {}),
    };
  }
  throw new DimseCommandError(`unsupported command field 0x${field.toString(16).padStart(4, '0')}`);
}

/** Encode a C-ECHO-RQ (PS3.7 Table 9.3-12), for the SCU. */
export function encodeCEchoRq(messageId: number, sopClassUid: string): Buffer {
  return encodeCommandSet(
    new Map<number, number | string>([
      [CommandTag.AffectedSopClassUid, sopClassUid],
      [CommandTag.CommandField, CommandField.CEchoRq],
      [CommandTag.MessageId, messageId],
      [CommandTag.CommandDataSetType, NO_DATA_SET],
    ]),
  );
}

/** C-STORE Priority (0000,0700), PS3.7 §9.1.1.1.8. */
export const Priority = { Medium: 0x0000, High: 0x0001, Low: 0x0002 } as const;
export type Priority = (typeof Priority)[keyof typeof Priority];

/** Encode a C-STORE-RQ (PS3.7 Table 9.3-1), for the SCU; a data set always follows. */
export function encodeCStoreRq(r: {
  messageId: number;
  affectedSopClassUid: string;
  affectedSopInstanceUid: string;
  priority?: Priority;
}): Buffer {
  return encodeCommandSet(
    new Map<number, number | string>([
      [CommandTag.AffectedSopClassUid, r.affectedSopClassUid],
      [CommandTag.CommandField, CommandField.CStoreRq],
      [CommandTag.MessageId, r.messageId],
      [CommandTag.Priority, r.priority ?? Priority.Medium],
      [CommandTag.CommandDataSetType, DATA_SET_PRESENT],
      [CommandTag.AffectedSopInstanceUid, r.affectedSopInstanceUid],
    ]),
  );
}

/** Encode a response (C-ECHO-RSP PS3.7 Table 9.3-13, C-STORE-RSP Table 9.3-2). */
export function encodeResponse(r: DimseResponse): Buffer {
  const m = new Map<number, number | string>([
    [CommandTag.CommandField, r.commandField],
    [CommandTag.MessageIdBeingRespondedTo, r.messageIdBeingRespondedTo],
    [CommandTag.CommandDataSetType, NO_DATA_SET],
    [CommandTag.Status, r.status],
  ]);
  if (r.affectedSopClassUid) m.set(CommandTag.AffectedSopClassUid, r.affectedSopClassUid);
  if (r.affectedSopInstanceUid) m.set(CommandTag.AffectedSopInstanceUid, r.affectedSopInstanceUid);
  return encodeCommandSet(m);
}

/** Read a response's essentials (for the SCU). */
export function parseResponse(c: CommandSet): DimseResponse {
  const s = str(c, CommandTag.AffectedSopClassUid);
  const i = str(c, CommandTag.AffectedSopInstanceUid);
  const comment = str(c, CommandTag.ErrorComment);
  return {
    commandField: commandFieldOf(c),
    messageIdBeingRespondedTo: num(c, CommandTag.MessageIdBeingRespondedTo) ?? -1,
    status: num(c, CommandTag.Status) ?? -1,
    ...(s ? { affectedSopClassUid: s } : {}),
    ...(i ? { affectedSopInstanceUid: i } : {}),
    ...(comment ? { errorComment: comment } : {}),
  };
}

/**
 * Encode a C-FIND-RQ (PS3.7 Table 9.3-3), C-MOVE-RQ (Table 9.3-5, with Move Destination) or
 * C-GET-RQ (Table 9.3-4), for the SCU; the Identifier always follows as the data set.
 */
export function encodeQueryRetrieveRq(r: {
  commandField: typeof CommandField.CFindRq | typeof CommandField.CMoveRq | typeof CommandField.CGetRq;
  messageId: number;
  affectedSopClassUid: string;
  priority?: Priority;
  moveDestination?: string;
}): Buffer {
  const m = new Map<number, number | string>([
    [CommandTag.AffectedSopClassUid, r.affectedSopClassUid],
    [CommandTag.CommandField, r.commandField],
    [CommandTag.MessageId, r.messageId],
    [CommandTag.Priority, r.priority ?? Priority.Medium],
    [CommandTag.CommandDataSetType, DATA_SET_PRESENT],
  ]);
  if (r.commandField === CommandField.CMoveRq) {
    if (!r.moveDestination) throw new DimseCommandError('C-MOVE-RQ without Move Destination (0000,0600)');
    m.set(CommandTag.MoveDestination, r.moveDestination);
  }
  return encodeCommandSet(m);
}

/** Encode a C-CANCEL-RQ (PS3.7 Table 9.3-6): names the request it cancels; no data set. */
export function encodeCCancelRq(messageIdBeingRespondedTo: number): Buffer {
  return encodeCommandSet(
    new Map<number, number | string>([
      [CommandTag.CommandField, CommandField.CCancelRq],
      [CommandTag.MessageIdBeingRespondedTo, messageIdBeingRespondedTo],
      [CommandTag.CommandDataSetType, NO_DATA_SET],
    ]),
  );
}

/** Sub-operation counts of a C-MOVE-RSP / C-GET-RSP (PS3.7 Table 9.3-5/9.3-4; PS3.4 C.4.2.1.4). */
export interface SubOperations {
  readonly remaining?: number;
  readonly completed?: number;
  readonly failed?: number;
  readonly warning?: number;
}

/** The sub-operation counts present in a response command set (each is optional, PS3.7 Table 9.3-5). */
export function subOperationsOf(c: CommandSet): SubOperations {
  const remaining = num(c, CommandTag.NumberOfRemainingSuboperations);
  const completed = num(c, CommandTag.NumberOfCompletedSuboperations);
  const failed = num(c, CommandTag.NumberOfFailedSuboperations);
  const warning = num(c, CommandTag.NumberOfWarningSuboperations);
  return {
    ...(remaining !== undefined ? { remaining } : {}),
    ...(completed !== undefined ? { completed } : {}),
    ...(failed !== undefined ? { failed } : {}),
    ...(warning !== undefined ? { warning } : {}),
  };
}
