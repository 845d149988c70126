import dcmjs from 'dcmjs';
import { DicomError, ErrorCode, normalizeErrorString } from '../errors.js';
import { CharacterSetTerm, characterSetTerms, decodeText, TextKind } from './character-set.js';
import { TransferSyntax } from './uids.js';

/**
 * Part 10 parsing on dcmjs (PS3.10 §7). Works on buffers only; no I/O here (STYLE §2.1).
 * dcmjs logs every unknown tag or odd VR (at warn and error); we report through typed errors, so silence it once.
 */
silenceDcmjsLogs(dcmjs);

/**
 * dcmjs logs through loglevel: its root logger and a "validation.dcmjs" child that was created at
 * module load and so does not follow the root's level. Silence both (also used for the dcmjs copy
 * that dcmjs-codecs bundles).
 */
export function silenceDcmjsLogs(lib: unknown): void {
  const log = (lib as { log?: { setLevel(l: string): void; getLogger?(n: string): { setLevel(l: string): void } } })
    .log;
  log?.setLevel('silent');
  log?.getLogger?.('validation.dcmjs').setLevel('silent');
}

/** A naturalized dataset (dcmjs keyword → value). */
export type NaturalDataset = Record<string, unknown>;

export interface Part10Instance {
  /** File Meta Information, naturalized (TransferSyntaxUID, MediaStorageSOPClassUID…). */
  readonly meta: NaturalDataset;
  /** The data set, naturalized. */
  readonly dataset: NaturalDataset;
  /** Raw dcmjs dictionary (tag → {vr, Value}), for code that needs the exact encoding. */
  readonly dict: Record<string, { vr: string; Value: unknown[] }>;
  readonly transferSyntaxUid: string;
}

/** The identifying UIDs every stored instance must have (PS3.3 C.12.1, C.7.2.1, C.7.3.1). */
export interface InstanceIdentity {
  readonly studyInstanceUid: string;
  readonly seriesInstanceUid: string;
  readonly sopInstanceUid: string;
  readonly sopClassUid: string;
  readonly transferSyntaxUid: string;
  readonly modality: string | undefined;
}

const UID_RE = /^(0|[1-9][0-9]*)(\.(0|[1-9][0-9]*))*$/;

export function isValidUid(uid: unknown): uid is string {
  return typeof uid === 'string' && uid.length > 0 && uid.length <= 64 && UID_RE.test(uid);
}

function toArrayBuffer(buf: Uint8Array): ArrayBuffer {
  return buf.buffer.slice(buf.byteOffset, buf.byteOffset + buf.byteLength) as ArrayBuffer;
}

type DcmjsDict = Record<string, { vr: string; Value: unknown[] }>;

function readWithDcmjs(buf: Uint8Array, untilPixelData: boolean): { meta: DcmjsDict; dict: DcmjsDict } {
  // dcmjs decodes text with one WHATWG decoder per stream and refuses code extensions (several values
  // in Specific Character Set, PS3.3 C.12.1.1.2). We let it read text as raw bytes instead and decode
  // each element ourselves (character-set.ts) under the character set of its own data set or item.
  const copy = withRawCharacterSets(buf);
  const read = (b: Uint8Array) =>
    dcmjs.data.DicomMessage.readFile(toArrayBuffer(b), {
      ignoreErrors: false,
      untilTag: untilPixelData ? '7FE00010' : undefined,
      includeUntilTagValue: false,
    }) as unknown as { meta: DcmjsDict; dict: DcmjsDict };
  let parsed: { meta: DcmjsDict; dict: DcmjsDict };
  try {
    parsed = withRawDecoding(copy.keys, () => read(copy.bytes));
  } catch (err) {
    throw unreadable(err);
  }
  decodeTextElements(parsed.dict, []);
  return parsed;
}

function unreadable(err: unknown): DicomError {
  return new DicomError(ErrorCode.DicomInvalid, `unreadable DICOM data set: ${normalizeErrorString(err)}`, {
    cause: err,
  });
}

function finish(parsed: { meta: DcmjsDict; dict: DcmjsDict }, fallbackTs?: string): Part10Instance {
  const naturalize = dcmjs.data.DicomMetaDictionary.naturalizeDataset as (d: unknown) => NaturalDataset;
  const meta = naturalize(parsed.meta);
  const dataset = naturalize(parsed.dict);
  const ts = meta.TransferSyntaxUID ?? fallbackTs;
  if (!isValidUid(ts))
    throw new DicomError(ErrorCode.DicomInvalid, 'file meta lacks a valid Transfer Syntax UID (0002,0010)');
  if (ts === TransferSyntax.ExplicitVrBigEndian) lutDataToLittleEndian(dataset);
  return { meta, dataset, dict: parsed.dict, transferSyntaxUid: ts };
}

/** LUT Data elements whose OW value holds 16-bit words (PS3.3 C.7.6.3.1.6, C.7.9.2, C.11.1.1, C.11.2.1). */
const LUT_DATA_KEYWORD = /(LookupTableData|^LUTData)$/;

/**
 * dcmjs hands an OW value of an Explicit VR Big Endian file (PS3.5 §A.3) over as the file's bytes.
 * frames.ts swaps Pixel Data itself; swap the words of every LUT Data value here (palette, segmented
 * palette, Modality and VOI LUT Data, in sequences too) so that readers see little-endian words as
 * for every other transfer syntax. Without this a big-endian palette image renders black.
 * Values dcmjs already decoded to numbers (VR US/SS) are right as they are.
 */
function lutDataToLittleEndian(root: NaturalDataset): void {
  const pending: NaturalDataset[] = [root];
  for (let d = pending.pop(); d !== undefined; d = pending.pop()) {
    for (const [key, value] of Object.entries(d)) {
      const values = Array.isArray(value) ? value : [value];
      if (LUT_DATA_KEYWORD.test(key)) {
        const swapped = values.map((v) => (v instanceof ArrayBuffer || ArrayBuffer.isView(v) ? swapWords(v) : v));
        d[key] = Array.isArray(value) ? swapped : swapped[0];
        continue;
      }
      for (const v of values) {
        if (typeof v === 'object' && v !== null && !(v instanceof ArrayBuffer) && !ArrayBuffer.isView(v)) {
          pending.push(v as NaturalDataset);
        }
      }
    }
  }
}

function swapWords(v: ArrayBuffer | ArrayBufferView): ArrayBuffer {
  const src = v instanceof ArrayBuffer ? new Uint8Array(v) : new Uint8Array(v.buffer, v.byteOffset, v.byteLength);
  const out = new Uint8Array(src.byteLength);
  for (let i = 0; i + 1 < src.byteLength; i += 2) {
    out[i] = src[i + 1] ?? 0;
    out[i + 1] = src[i] ?? 0;
  }
  if (src.byteLength % 2 === 1) out[src.byteLength - 1] = src[src.byteLength - 1] ?? 0;
  return out.buffer;
}

function hasDicmPrefix(buf: Uint8Array, at: number): boolean {
  return buf[at] === 0x44 && buf[at + 1] === 0x49 && buf[at + 2] === 0x43 && buf[at + 3] === 0x4d;
}

/**
 * Parse a Part 10 file (PS3.10 §7.1: 128-byte preamble, "DICM", File Meta Information). This is what
 * STOW-RS and C-STORE intake accept. `untilPixelData` stops before (7FE0,0010) when only the header
 * is needed. Throws DicomError(dicom-invalid) for anything that cannot be read.
 */
export function parsePart10(buf: Uint8Array, options: { untilPixelData?: boolean } = {}): Part10Instance {
  if (buf.byteLength < 132 || !hasDicmPrefix(buf, 128)) {
    throw new DicomError(ErrorCode.DicomInvalid, 'not a DICOM Part 10 file: no "DICM" prefix at offset 128');
  }
  return finish(readWithDcmjs(buf, options.untilPixelData ?? false));
}

/** How {@link parseDicomFile} found the data set (for logs and tests). */
export const DicomFileLayout = {
  /** Preamble, "DICM", File Meta Information with group length: a conformant Part 10 file. */
  Part10: 'part10',
  /** File Meta Information present but without preamble, "DICM" or (0002,0000) group length. */
  MetaRepaired: 'meta-repaired',
  /** A bare data set (no File Meta Information, as ACR-NEMA-era files); transfer syntax guessed. */
  NoMeta: 'no-meta',
} as const;
export type DicomFileLayout = (typeof DicomFileLayout)[keyof typeof DicomFileLayout];

/** Is there an explicit-VR group 0002 element header at `at` (PS3.10 §7.1 is always explicit VR LE)? */
function metaElementAt(buf: Uint8Array, at: number): boolean {
  return (
    at + 8 <= buf.byteLength &&
    buf[at] === 0x02 &&
    buf[at + 1] === 0x00 &&
    isVrChar(buf[at + 4]) &&
    isVrChar(buf[at + 5])
  );
}

function isVrChar(b: number | undefined): boolean {
  return b !== undefined && b >= 0x41 && b <= 0x5a;
}

/** VRs with a 4-byte length in Explicit VR (PS3.5 §7.1.2, Table 7.1-1). */
export const LONG_VRS: ReadonlySet<string> = new Set([
  'OB',
  'OD',
  'OF',
  'OL',
  'OV',
  'OW',
  'SQ',
  'SV',
  'UC',
  'UN',
  'UR',
  'UT',
  'UV',
]);

/**
 * Read the group 0002 elements starting at `at` (explicit VR LE, PS3.10 §7.1). Returns the raw bytes
 * of each element except (0002,0000), the offset where the data set starts, and the Transfer Syntax UID.
 */
function readMetaElements(
  buf: Uint8Array,
  at: number,
): { elements: Uint8Array[]; end: number; ts: string | undefined } {
  const dv = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  const elements: Uint8Array[] = [];
  let pos = at;
  let ts: string | undefined;
  while (metaElementAt(buf, pos)) {
    const element = dv.getUint16(pos + 2, true);
    const vr = String.fromCharCode(buf[pos + 4] ?? 0, buf[pos + 5] ?? 0);
    const long = LONG_VRS.has(vr);
    const headerLen = long ? 12 : 8;
    if (pos + headerLen > buf.byteLength) break;
    const len = long ? dv.getUint32(pos + 8, true) : dv.getUint16(pos + 6, true);
    const end = pos + headerLen + len;
    if (len === 0xffffffff || end > buf.byteLength) {
      throw new DicomError(ErrorCode.DicomInvalid, 'File Meta Information element length exceeds the file');
    }
    if (element === 0x0010)
      ts = new TextDecoder('latin1').decode(buf.subarray(pos + headerLen, end)).replace(/[\0\s]+$/, '');
    if (element !== 0x0000) elements.push(buf.subarray(pos, end));
    pos = end;
  }
  return { elements, end: pos, ts };
}

function uiElement(element: number, value: string): Uint8Array {
  const v = value.length % 2 === 1 ? `${value}\0` : value;
  const out = new Uint8Array(8 + v.length);
  const dv = new DataView(out.buffer);
  dv.setUint16(0, 0x0002, true);
  dv.setUint16(2, element, true);
  out[4] = 0x55; // 'U'
  out[5] = 0x49; // 'I'
  dv.setUint16(6, v.length, true);
  for (let i = 0; i < v.length; i++) out[8 + i] = v.charCodeAt(i);
  return out;
}

/** Preamble + "DICM" + (0002,0000) + the given meta elements + the data set bytes. */
function rebuildPart10(elements: readonly Uint8Array[], dataSet: Uint8Array): Uint8Array {
  const metaLen = elements.reduce((n, e) => n + e.byteLength, 0);
  const out = new Uint8Array(132 + 12 + metaLen + dataSet.byteLength);
  out.set([0x44, 0x49, 0x43, 0x4d], 128);
  const dv = new DataView(out.buffer);
  dv.setUint32(132, 0x00000002, true); // (0002,0000)
  out.set([0x55, 0x4c], 136); // UL
  dv.setUint16(138, 4, true);
  dv.setUint32(140, metaLen, true);
  let pos = 144;
  for (const e of elements) {
    out.set(e, pos);
    pos += e.byteLength;
  }
  out.set(dataSet, pos);
  return out;
}

/**
 * Read a DICOM file from disk or the command line as leniently as DCMTK's `dcmdump` does by default:
 * a conformant Part 10 file; File Meta Information without preamble, "DICM" or group length; or a
 * bare data set without File Meta Information (implicit or explicit VR Little Endian, told apart by
 * whether bytes 4–5 are a VR). PS3.10 §7.1 requires the preamble for files, so network intake keeps
 * using {@link parsePart10}; this is for files an operator hands us.
 */
export function parseDicomFile(
  buf: Uint8Array,
  options: { untilPixelData?: boolean } = {},
): Part10Instance & { readonly layout: DicomFileLayout } {
  const until = options.untilPixelData ?? false;
  // "DICM" at 128 followed by a group 0002 element: the normal case, parsed without copying.
  const part10 = buf.byteLength >= 132 && hasDicmPrefix(buf, 128) && metaElementAt(buf, 132);
  if (part10 && buf[132 + 2] === 0x00 && buf[132 + 3] === 0x00) {
    return { ...finish(readWithDcmjs(buf, until)), layout: DicomFileLayout.Part10 };
  }
  const metaStart = part10 ? 132 : hasDicmPrefix(buf, 0) && metaElementAt(buf, 4) ? 4 : 0;
  if (metaElementAt(buf, metaStart)) {
    const { elements, end, ts } = readMetaElements(buf, metaStart);
    if (!isValidUid(ts)) {
      throw new DicomError(ErrorCode.DicomInvalid, 'file meta lacks a valid Transfer Syntax UID (0002,0010)');
    }
    const rebuilt = rebuildPart10(elements, buf.subarray(end));
    return { ...finish(readWithDcmjs(rebuilt, until)), layout: DicomFileLayout.MetaRepaired };
  }
  // No meta: a data set starts with an even group ≥ 0x0008 (PS3.5 §7.1); explicit VR if a VR follows.
  if (buf.byteLength < 8 || (buf[0] ?? 1) % 2 !== 0 || buf[1] !== 0x00 || (buf[0] ?? 0) < 0x08) {
    throw new DicomError(
      ErrorCode.DicomInvalid,
      'not a DICOM file: neither File Meta Information nor a data set at the start',
    );
  }
  const ts =
    isVrChar(buf[4]) && isVrChar(buf[5])
      ? TransferSyntax.ExplicitVrLittleEndian
      : TransferSyntax.ImplicitVrLittleEndian;
  const rebuilt = rebuildPart10([uiElement(0x0010, ts)], buf);
  return { ...finish(readWithDcmjs(rebuilt, until), ts), layout: DicomFileLayout.NoMeta };
}

/** (0008,0005) and (7FE0,0010) as they start an element in a Little Endian data set. */
const CHARSET_TAG = Buffer.from([0x08, 0x00, 0x05, 0x00]);
const PIXEL_DATA_TAG = Buffer.from([0xe0, 0x7f, 0x10, 0x00]);

/** Separator standing in for '\' inside Specific Character Set values while dcmjs reads them. */
const TERM_SEPARATOR = '|';

/**
 * A copy of `buf` in which every Specific Character Set (0008,0005) value has '\' replaced by
 * {@link TERM_SEPARATOR}, so dcmjs sees one value (it refuses several) and no other offset moves; and
 * the dcmjs lookup keys of those values. Found by the element header: explicit VR
 * `08 00 05 00 'CS' len16` or implicit `08 00 05 00 len32`. A deflated data set is not searched: its
 * values are seen only when dcmjs knows them.
 */
function withRawCharacterSets(buf: Uint8Array): { bytes: Uint8Array; keys: string[] } {
  let out: Uint8Array | undefined;
  const keys: string[] = [];
  const dv = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  const b = Buffer.from(buf.buffer, buf.byteOffset, buf.byteLength);
  // Only the header: stop at the first Pixel Data tag, so pixel bytes are never searched (or patched).
  const pixelData = b.indexOf(PIXEL_DATA_TAG);
  const end = pixelData < 0 ? buf.byteLength : pixelData;
  for (let i = b.indexOf(CHARSET_TAG); i >= 0 && i + 8 < end; i = b.indexOf(CHARSET_TAG, i + 1)) {
    const explicit = buf[i + 4] === 0x43 && buf[i + 5] === 0x53;
    const len = explicit ? dv.getUint16(i + 6, true) : dv.getUint32(i + 4, true);
    const start = i + 8;
    if (len === 0 || len > 160 || start + len > end) continue;
    const text = new TextDecoder('latin1').decode(buf.subarray(start, start + len));
    if (!/^[\x20-\x7e]*$/.test(text)) continue;
    if (text.includes('\\')) {
      out ??= new Uint8Array(buf); // copied only when a value has to change
      for (let k = 0; k < len; k++) if (out[start + k] === 0x5c) out[start + k] = TERM_SEPARATOR.charCodeAt(0);
    }
    keys.push(dcmjsCharsetKey(text.replace(/\\/g, TERM_SEPARATOR).trim()));
  }
  return { bytes: out ?? buf, keys };
}

/** The key dcmjs looks a Specific Character Set value up by (its `encodingMapping`). */
function dcmjsCharsetKey(value: string): string {
  return value.replace(/[_ ]/g, '-').toLowerCase();
}

type EncodingMapping = Record<string, string>;
const DCMJS_ENCODINGS = (dcmjs as unknown as { constants: { encodingMapping: EncodingMapping } }).constants
  .encodingMapping;

/**
 * Run `fn` (a synchronous dcmjs read) with every character set mapped to dcmjs's own default decoder,
 * "latin1" (WHATWG windows-1252), which maps each byte to a distinct code point, so the bytes can be
 * recovered ({@link rawBytes}); `extraKeys` are also accepted. dcmjs's table is restored afterwards; the read is synchronous, so
 * nothing else can observe the change.
 */
function withRawDecoding<T>(extraKeys: readonly string[], fn: () => T): T {
  const saved = { ...DCMJS_ENCODINGS };
  try {
    for (const k of Object.keys(DCMJS_ENCODINGS)) DCMJS_ENCODINGS[k] = RAW_DECODER;
    for (const t of Object.values(CharacterSetTerm)) DCMJS_ENCODINGS[dcmjsCharsetKey(t)] = RAW_DECODER;
    for (const k of extraKeys) DCMJS_ENCODINGS[k] = RAW_DECODER;
    return fn();
  } finally {
    for (const k of Object.keys(DCMJS_ENCODINGS)) delete DCMJS_ENCODINGS[k];
    Object.assign(DCMJS_ENCODINGS, saved);
  }
}

/** The bytes behind a string dcmjs decoded with {@link RAW_DECODER}. */
function rawBytes(s: string): Uint8Array {
  const out = new Uint8Array(s.length);
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    out[i] = c < 0x80 ? c : (WINDOWS_1252_INVERSE.get(c) ?? 0x3f);
  }
  return out;
}

const RAW_DECODER = 'windows-1252';
const WINDOWS_1252_INVERSE: ReadonlyMap<number, number> = (() => {
  const m = new Map<number, number>();
  const d = new TextDecoder(RAW_DECODER);
  for (let b = 0x80; b <= 0xff; b++) m.set(d.decode(Uint8Array.of(b)).charCodeAt(0), b);
  // A bijection on bytes (WHATWG Encoding, index windows-1252 plus the five C1 pass-throughs).
  if (m.size !== 0x80) throw new Error('windows-1252 decoder is not byte-reversible');
  return m;
})();

/** String VRs whose values may use the Specific Character Set (PS3.5 §6.1.2.3, Table 6.2-1). */
const CHARSET_VRS: ReadonlySet<string> = new Set(['SH', 'LO', 'ST', 'LT', 'UT', 'UC', 'PN']);
const SINGLE_VALUE_VRS: ReadonlySet<string> = new Set(['LT']);

/**
 * Decode every text element of `dict` (and of its sequence items) under the character set in force:
 * the data set's own Specific Character Set, else the enclosing one (PS3.5 §6.1.2.5: an item may
 * carry its own). Values and their dcmjs shapes (PN objects, '\'-split arrays) are rebuilt with the
 * dcmjs formatting of the VR, so pure-ASCII values come out exactly as dcmjs makes them.
 */
function decodeTextElements(dict: DcmjsDict, inherited: readonly string[]): void {
  const cs = dict['00080005'] as { Value: unknown[]; _rawValue?: unknown } | undefined;
  let terms = inherited;
  if (cs) {
    const raw = Array.isArray(cs._rawValue) ? cs._rawValue.join('\\') : String(cs._rawValue ?? '');
    terms = characterSetTerms(raw.split(TERM_SEPARATOR).join('\\'));
    if (terms.length === 1 && terms[0] === '') terms = [];
    // Keep the source's Specific Character Set visible (dcmjs rewrites it to ISO_IR 192).
    cs.Value = [...terms];
    cs._rawValue = cs.Value;
  }
  for (const el of Object.values(dict) as Array<{ vr: string; Value: unknown[]; _rawValue?: unknown }>) {
    if (el.vr === 'SQ') {
      for (const item of el.Value ?? [])
        if (item && typeof item === 'object') decodeTextElements(item as DcmjsDict, terms);
      continue;
    }
    if (!CHARSET_VRS.has(el.vr)) continue;
    const raw = Array.isArray(el._rawValue)
      ? el._rawValue.map(String).join('\\')
      : typeof el._rawValue === 'string'
        ? el._rawValue
        : undefined;
    if (raw === undefined || raw.length === 0) continue;
    const bytes = rawBytes(raw);
    if (bytes.every((b) => b < 0x80 && b !== 0x1b)) continue;
    const kind =
      el.vr === 'PN'
        ? TextKind.PersonName
        : el.vr === 'ST' || el.vr === 'LT' || el.vr === 'UT'
          ? TextKind.Single
          : TextKind.MultiValued;
    const { text } = decodeText(bytes, terms, kind);
    const vr = dcmjs.data.ValueRepresentation.createByTypeString(el.vr) as unknown as {
      applyFormatting(v: string): unknown;
      dropPadByte(v: string[]): string[];
    };
    const value = vr.applyFormatting(text);
    if (typeof value === 'string' && !SINGLE_VALUE_VRS.has(el.vr)) {
      el.Value = vr.dropPadByte(value.split('\\'));
      el._rawValue = vr.dropPadByte(text.split('\\'));
    } else {
      el.Value = Array.isArray(value) ? value : [value];
      el._rawValue = text;
    }
  }
}

/** Extract and validate the identifying UIDs; throws DicomError(dicom-invalid) naming the first missing one. */
export function instanceIdentity(inst: Part10Instance): InstanceIdentity {
  const d = inst.dataset;
  const need = (kw: string, tag: string): string => {
    const v = d[kw];
    if (!isValidUid(v)) throw new DicomError(ErrorCode.DicomInvalid, `missing or invalid ${kw} ${tag}`);
    return v;
  };
  const modality = typeof d.Modality === 'string' && d.Modality.length > 0 ? d.Modality : undefined;
  return {
    studyInstanceUid: need('StudyInstanceUID', '(0020,000D)'),
    seriesInstanceUid: need('SeriesInstanceUID', '(0020,000E)'),
    sopInstanceUid: need('SOPInstanceUID', '(0008,0018)'),
    sopClassUid: need('SOPClassUID', '(0008,0016)'),
    transferSyntaxUid: inst.transferSyntaxUid,
    modality,
  };
}
