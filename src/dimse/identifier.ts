import { decodeText, TextKind } from '../dicom/character-set.js';
import { LONG_VRS } from '../dicom/dataset.js';
import { TransferSyntax } from '../dicom/uids.js';

/**
 * Query/Retrieve Identifiers (PS3.4 C.4.1.1.3, C.6.2): the data set of a C-FIND-RQ/RSP and
 * C-MOVE-RQ. A flat list of the Study Root keys of PS3.4 Table C.6-5 (STUDY) and C.6-6 (SERIES) that
 * RadScribe asks for, encoded in the negotiated transfer syntax (Implicit or Explicit VR Little
 * Endian: the two proposed). Text of the character-set-sensitive VRs (PN, LO, SH, ST, LT, UC, UT)
 * goes in the repertoire named by Specific Character Set (0008,0005): none for ASCII (the default
 * repertoire, PS3.5 §6.1.2.1), ISO_IR 100 when Latin-1 suffices, ISO_IR 192 (UTF-8) otherwise —
 * or the node's configured term. Answers are decoded under the term they carry
 * (src/dicom/character-set.ts: every PS3.3 C.12.1.1.2 term, ISO 2022 extensions).
 */

type Vr = 'AE' | 'CS' | 'DA' | 'TM' | 'UI' | 'IS' | 'PN' | 'LO' | 'SH' | 'LT' | 'ST' | 'UC' | 'UT' | 'DT';

/** The keys RadScribe sends or reads, with their tags and VRs (PS3.6). */
export const QueryKey = {
  SpecificCharacterSet: { tag: 0x00080005, vr: 'CS' },
  StudyDate: { tag: 0x00080020, vr: 'DA' },
  SeriesDate: { tag: 0x00080021, vr: 'DA' },
  StudyTime: { tag: 0x00080030, vr: 'TM' },
  SeriesTime: { tag: 0x00080031, vr: 'TM' },
  AccessionNumber: { tag: 0x00080050, vr: 'SH' },
  QueryRetrieveLevel: { tag: 0x00080052, vr: 'CS' },
  RetrieveAETitle: { tag: 0x00080054, vr: 'AE' },
  InstanceAvailability: { tag: 0x00080056, vr: 'CS' },
  FailedSOPInstanceUIDList: { tag: 0x00080058, vr: 'UI' },
  Modality: { tag: 0x00080060, vr: 'CS' },
  ModalitiesInStudy: { tag: 0x00080061, vr: 'CS' },
  ReferringPhysicianName: { tag: 0x00080090, vr: 'PN' },
  StudyDescription: { tag: 0x00081030, vr: 'LO' },
  SeriesDescription: { tag: 0x0008103e, vr: 'LO' },
  PatientName: { tag: 0x00100010, vr: 'PN' },
  PatientID: { tag: 0x00100020, vr: 'LO' },
  PatientBirthDate: { tag: 0x00100030, vr: 'DA' },
  PatientSex: { tag: 0x00100040, vr: 'CS' },
  BodyPartExamined: { tag: 0x00180015, vr: 'CS' },
  StudyInstanceUID: { tag: 0x0020000d, vr: 'UI' },
  SeriesInstanceUID: { tag: 0x0020000e, vr: 'UI' },
  StudyID: { tag: 0x00200010, vr: 'SH' },
  SeriesNumber: { tag: 0x00200011, vr: 'IS' },
  NumberOfStudyRelatedSeries: { tag: 0x00201206, vr: 'IS' },
  NumberOfStudyRelatedInstances: { tag: 0x00201208, vr: 'IS' },
  NumberOfSeriesRelatedInstances: { tag: 0x00201209, vr: 'IS' },
} as const satisfies Record<string, { tag: number; vr: Vr }>;
export type QueryKeyword = keyof typeof QueryKey;

/** Keyword → value; '' is universal matching (return the attribute), '\' separates values. */
export type Identifier = Partial<Record<QueryKeyword, string>>;

const BY_TAG: ReadonlyMap<number, QueryKeyword> = new Map(
  (Object.entries(QueryKey) as [QueryKeyword, { tag: number }][]).map(([k, v]) => [v.tag, k]),
);

/** VRs whose text depends on Specific Character Set (PS3.5 §6.1.2.2); the rest are default repertoire. */
const TEXT_VRS: ReadonlySet<Vr> = new Set<Vr>(['PN', 'LO', 'SH', 'ST', 'LT', 'UC', 'UT']);
/** Identifier text (one value, all its components) longer than this is refused (no key needs more). */
const MAX_VALUE_BYTES = 1024;

export class IdentifierError extends Error {
  override name = 'IdentifierError' as const;
}

/** The Specific Character Set terms RadScribe encodes query text in. */
export const EncodableCharacterSet = { Latin1: 'ISO_IR 100', Utf8: 'ISO_IR 192' } as const;
export type EncodableCharacterSet = (typeof EncodableCharacterSet)[keyof typeof EncodableCharacterSet];

const isAscii = (s: string): boolean => /^[\x20-\x7e]*$/.test(s);
const isLatin1 = (s: string): boolean => /^[\x20-\x7e\xa0-\xff]*$/.test(s);

/**
 * The Specific Character Set an identifier needs: undefined when every text value is printable
 * ASCII (the default repertoire, so no (0008,0005) is sent at all, which every SCP understands);
 * else `preferred`, or ISO_IR 100 when Latin-1 holds every value, else ISO_IR 192.
 */
export function characterSetFor(id: Identifier, preferred?: EncodableCharacterSet): EncodableCharacterSet | undefined {
  const texts = (Object.entries(id) as [QueryKeyword, string | undefined][])
    .filter(([k, v]) => v !== undefined && k !== 'SpecificCharacterSet' && TEXT_VRS.has(QueryKey[k].vr))
    .map(([, v]) => v as string);
  if (texts.every(isAscii)) return undefined;
  if (preferred) return preferred;
  return texts.every(isLatin1) ? EncodableCharacterSet.Latin1 : EncodableCharacterSet.Utf8;
}

function valueBytes(keyword: QueryKeyword, value: string, cs: EncodableCharacterSet | undefined): Buffer {
  const { vr } = QueryKey[keyword];
  // Control characters other than those PS3.5 §6.1.3 allows in LT/ST/UT never belong in a key.
  if ([...value].some((ch) => ch.charCodeAt(0) < 0x20 || ch.charCodeAt(0) === 0x7f))
    throw new IdentifierError(`${keyword}: control character in value`);
  let b: Buffer;
  if (TEXT_VRS.has(vr)) {
    if (cs === EncodableCharacterSet.Latin1) {
      if (!isLatin1(value)) throw new IdentifierError(`${keyword}: not representable in ISO_IR 100`);
      b = Buffer.from(value, 'latin1');
    } else if (cs === EncodableCharacterSet.Utf8) b = Buffer.from(value, 'utf8');
    else {
      if (!isAscii(value)) throw new IdentifierError(`${keyword}: non-ASCII text needs a Specific Character Set`);
      b = Buffer.from(value, 'latin1');
    }
  } else {
    if (!isAscii(value)) throw new IdentifierError(`${keyword}: ${vr} allows the default repertoire only`);
    b = Buffer.from(value, 'latin1');
  }
  if (b.length > MAX_VALUE_BYTES) throw new IdentifierError(`${keyword}: value over ${MAX_VALUE_BYTES} bytes`);
  // Even length (PS3.5 §7.1): UI padded with NUL, the others with a space.
  return b.length % 2 === 1 ? Buffer.concat([b, Buffer.from(vr === 'UI' ? [0] : [0x20])]) : b;
}

function isExplicit(transferSyntax: string): boolean {
  if (transferSyntax === TransferSyntax.ImplicitVrLittleEndian) return false;
  if (transferSyntax === TransferSyntax.ExplicitVrLittleEndian) return true;
  throw new IdentifierError(`identifier transfer syntax ${transferSyntax} not supported`);
}

/**
 * Encode an identifier in `transferSyntax` (Implicit or Explicit VR Little Endian), elements in
 * ascending tag order (PS3.5 §7.1), with Specific Character Set first when the text needs one.
 */
export function encodeIdentifier(
  id: Identifier,
  transferSyntax: string,
  opts: { characterSet?: EncodableCharacterSet } = {},
): Buffer {
  const explicit = isExplicit(transferSyntax);
  const cs = characterSetFor(id, opts.characterSet);
  const all: Identifier = { ...id };
  delete all.SpecificCharacterSet;
  if (cs) all.SpecificCharacterSet = cs;
  const entries = (Object.entries(all) as [QueryKeyword, string | undefined][])
    .filter((e): e is [QueryKeyword, string] => e[1] !== undefined)
    .sort((a, b) => QueryKey[a[0]].tag - QueryKey[b[0]].tag);
  const parts: Buffer[] = [];
  for (const [k, v] of entries) {
    const { tag, vr } = QueryKey[k];
    const value = valueBytes(k, v, cs);
    const long = explicit && LONG_VRS.has(vr);
    const h = Buffer.alloc(explicit ? (long ? 12 : 8) : 8);
    h.writeUInt16LE(tag >>> 16, 0);
    h.writeUInt16LE(tag & 0xffff, 2);
    if (!explicit) h.writeUInt32LE(value.length, 4);
    else {
      h.write(vr, 4, 'latin1');
      if (long) h.writeUInt32LE(value.length, 8);
      else h.writeUInt16LE(value.length, 6);
    }
    parts.push(h, value);
  }
  return Buffer.concat(parts);
}

export interface DecodedIdentifier {
  readonly values: Identifier;
  /** Some text could not be decoded under the identifier's character set (U+FFFD in its place). */
  readonly lossy: boolean;
}

const ITEM = 0xfffee000;
const ITEM_DELIMITATION = 0xfffee00d;
const SEQUENCE_DELIMITATION = 0xfffee0dd;
const UNDEFINED = 0xffffffff;
/** Nesting beyond this in an answer is refused (a hostile peer could recurse us out of stack). */
const MAX_DEPTH = 16;

interface Header {
  readonly tag: number;
  readonly vr: string | undefined;
  readonly length: number;
  readonly valueOffset: number;
}

function readHeader(b: Buffer, off: number, explicit: boolean): Header {
  if (off + 8 > b.length) throw new IdentifierError('identifier: truncated element header');
  const tag = ((b.readUInt16LE(off) << 16) | b.readUInt16LE(off + 2)) >>> 0;
  // Item and delimitation tags carry no VR in either syntax (PS3.5 §7.5).
  if (!explicit || tag === ITEM || tag === ITEM_DELIMITATION || tag === SEQUENCE_DELIMITATION)
    return { tag, vr: undefined, length: b.readUInt32LE(off + 4), valueOffset: off + 8 };
  const vr = b.toString('latin1', off + 4, off + 6);
  if (LONG_VRS.has(vr)) {
    if (off + 12 > b.length) throw new IdentifierError('identifier: truncated element header');
    return { tag, vr, length: b.readUInt32LE(off + 8), valueOffset: off + 12 };
  }
  return { tag, vr, length: b.readUInt16LE(off + 6), valueOffset: off + 8 };
}

/** Offset after an undefined-length sequence or item that starts at `off` (its content). */
function skipUndefined(b: Buffer, off: number, explicit: boolean, end: number, depth: number): number {
  if (depth > MAX_DEPTH) throw new IdentifierError('identifier: nesting too deep');
  let o = off;
  while (o < b.length) {
    const h = readHeader(b, o, explicit);
    if (h.tag === end) return h.valueOffset;
    if (h.length === UNDEFINED) {
      const inner = h.tag === ITEM ? ITEM_DELIMITATION : SEQUENCE_DELIMITATION;
      // An item's elements are in the data set's own syntax; their headers are read as such.
      o = skipUndefined(b, h.valueOffset, explicit, inner, depth + 1);
    } else {
      if (h.valueOffset + h.length > b.length) throw new IdentifierError('identifier: element overruns');
      o = h.valueOffset + h.length;
    }
  }
  throw new IdentifierError('identifier: undefined-length sequence without its delimiter');
}

/**
 * Decode a C-FIND-RSP (or C-MOVE-RSP) identifier: the known keys as text, trailing padding removed
 * (leading spaces too, except for the VRs where they are significant: LT, ST, UT, PS3.5 Table 6.2-1).
 * Sequences and unknown elements are skipped.
 */
export function decodeIdentifier(b: Buffer, transferSyntax: string): DecodedIdentifier {
  const explicit = isExplicit(transferSyntax);
  const raw = new Map<QueryKeyword, Buffer>();
  let off = 0;
  while (off < b.length) {
    const h = readHeader(b, off, explicit);
    if (h.length === UNDEFINED) {
      off = skipUndefined(b, h.valueOffset, explicit, SEQUENCE_DELIMITATION, 1);
      continue;
    }
    if (h.valueOffset + h.length > b.length) throw new IdentifierError('identifier: element overruns');
    const k = BY_TAG.get(h.tag);
    if (k) raw.set(k, b.subarray(h.valueOffset, h.valueOffset + h.length));
    off = h.valueOffset + h.length;
  }
  const csRaw = raw.get('SpecificCharacterSet');
  const terms = csRaw
    ? csRaw
        .toString('latin1')
        .split('\\')
        .map((t) => t.trim())
    : [];
  const values: Identifier = {};
  let lossy = false;
  for (const [k, v] of raw) {
    const { vr } = QueryKey[k] as { vr: Vr };
    let text: string;
    if (TEXT_VRS.has(vr)) {
      const d = decodeText(
        v,
        terms,
        vr === 'PN'
          ? TextKind.PersonName
          : vr === 'LO' || vr === 'SH' || vr === 'UC'
            ? TextKind.MultiValued
            : TextKind.Single,
      );
      text = d.text;
      lossy ||= d.lossy;
    } else text = v.toString('latin1');
    text = text.replace(/[\0 ]+$/, '');
    if (vr !== 'LT' && vr !== 'ST' && vr !== 'UT') text = text.replace(/^ +/, '');
    values[k] = text;
  }
  return { values, lossy };
}

/** A non-negative integer from an IS value, or null (absent, empty, not an integer). */
export function integerOf(v: string | undefined): number | null {
  if (v === undefined) return null;
  const t = v.trim();
  if (!/^\+?\d{1,10}$/.test(t)) return null;
  return Number(t);
}
