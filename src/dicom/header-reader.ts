import { pipeline, Readable } from 'node:stream';
import { createInflateRaw, deflateRawSync } from 'node:zlib';
import { DicomError, ErrorCode } from '../errors.js';
import { type Part10Instance, parsePart10 } from './dataset.js';
import { checkInflation, DEFAULT_DICOM_LIMITS, DicomLimitError, type DicomLimits, LimitViolation } from './limits.js';
import { TransferSyntax } from './uids.js';

/**
 * Streaming reader of a Part 10 header (PS3.10 §7.1): preamble, "DICM", File Meta Information, then
 * the data set's elements in the transfer syntax the meta names (PS3.5 §7, Annex A), up to the
 * top-level Pixel Data element — (7FE0,0010) Pixel Data, (7FE0,0008) Float Pixel Data or
 * (7FE0,0009) Double Float Pixel Data (PS3.3 C.7.6.3). Only the bytes before that element are kept
 * (at most `maxHeaderBytes`) and handed to dcmjs; the pixels are never read, so a 2 GB multi-frame
 * instance costs the memory of its header. No I/O here (STYLE §2.1): the caller passes the bytes as
 * an async iterable of chunks of any size, and the iterator is closed as soon as the header is read.
 *
 * The walk needs no data dictionary: a defined-length value is skipped as bytes; sequences (SQ in an
 * explicit VR, any value that starts with an Item tag in Implicit VR) and items are walked, of defined
 * length or not (PS3.5 §7.5), so the nesting depth, the element count and every declared length are
 * checked against the DICOM limits (src/dicom/limits.ts) before dcmjs — which recurses per level —
 * sees a byte. An undefined-length value is walked in any case, to find where it ends.
 */

/** Largest header (bytes before Pixel Data, inflated for a deflated data set) read into memory. */
export const DEFAULT_MAX_HEADER_BYTES = 64 * 1024 * 1024;

/** Why a header could not be read. Closed set; all are `dicom-invalid`. */
export const HeaderFailure = {
  /** No "DICM" prefix at offset 128, or no File Meta Information group length (PS3.10 §7.1). */
  NotPart10: 'not-part10',
  /** The input ended inside the meta group, an element header or a value before Pixel Data. */
  Truncated: 'truncated',
  /** The header exceeds `maxHeaderBytes` (also guards a deflate bomb, PS3.5 A.5). */
  TooLarge: 'too-large',
  /** Structure violated: an item outside a sequence, a delimiter out of place, an undecodable stream. */
  Malformed: 'malformed',
} as const;
export type HeaderFailure = (typeof HeaderFailure)[keyof typeof HeaderFailure];

export class DicomHeaderError extends DicomError {
  override name = 'DicomHeaderError';
  readonly failure: HeaderFailure;
  constructor(failure: HeaderFailure, message: string, options?: { cause?: unknown }) {
    super(ErrorCode.DicomInvalid, `DICOM header: ${message}`, options);
    this.failure = failure;
  }
}

export function isDicomHeaderError(err: unknown, failure?: HeaderFailure): err is DicomHeaderError {
  return err instanceof DicomHeaderError && (failure === undefined || err.failure === failure);
}

/** The top-level pixel data element where the reader stopped (PS3.3 C.7.6.3, PS3.5 A.4). */
export interface PixelDataElement {
  /** Tag as 8 hex digits: 7FE00010, 7FE00008 or 7FE00009. */
  readonly tag: string;
  /** VR as encoded; undefined in Implicit VR Little Endian. */
  readonly vr: string | undefined;
  /** Declared value length; undefined for undefined length (encapsulated pixel data, PS3.5 A.4). */
  readonly length: number | undefined;
  /**
   * Offset of the element's first byte and of its value's first byte in the input; undefined for a
   * deflated data set, where they are positions in the inflated stream, not in the file.
   */
  readonly elementOffset: number | undefined;
  readonly valueOffset: number | undefined;
  /** Offset of the value's first byte from the start of the data set (inflated, for a deflated one). */
  readonly dataSetValueOffset: number;
}

export interface Part10Header {
  /** The header as dcmjs reads it: meta and data set without the pixel data element. */
  readonly instance: Part10Instance;
  /** Transfer Syntax UID (0002,0010) as the meta names it. */
  readonly transferSyntaxUid: string;
  /**
   * Specific Character Set (0008,0005) of the data set as received, values joined by `\`. dcmjs
   * reports every decoded data set as ISO_IR 192, so the source's value is taken from the bytes.
   */
  readonly specificCharacterSet: string | null;
  /** Undefined when the data set has no top-level pixel data element. */
  readonly pixelData: PixelDataElement | undefined;
  /** Bytes of the data set header read (before Pixel Data; inflated bytes for a deflated data set). */
  readonly headerBytes: number;
  /** Offset in the input where the data set starts (the end of the File Meta Information). */
  readonly dataSetOffset: number;
}

export interface ReadHeaderOptions {
  /** Cap on the bytes kept; beyond it DicomHeaderError(too-large). Default {@link DEFAULT_MAX_HEADER_BYTES}. */
  readonly maxHeaderBytes?: number;
  /** Depth, element count and inflation bounds; default DEFAULT_DICOM_LIMITS. */
  readonly limits?: DicomLimits;
  /**
   * Size of the whole input when known (a file): a declared length beyond it is refused as
   * DicomLimitError(element-length-exceeds-data) at once, without reading towards it.
   */
  readonly totalBytes?: number;
  /**
   * Top-level data elements (tags as group << 16 | element) handed to dcmjs; the others are walked
   * and bounded like every element but not decoded, and are absent from `instance`. For a caller that
   * needs a few attributes (ingest, issue 14: dcmjs decoding every element of a CT header was most of
   * the time to read it). Ignored for a deflated data set. Default: every element.
   */
  readonly keepTopLevel?: ReadonlySet<number>;
}

const UNDEFINED_LENGTH = 0xffffffff;
const ITEM = 0xe000;
const ITEM_DELIMITATION = 0xe00d;
const SEQUENCE_DELIMITATION = 0xe0dd;
const PIXEL_DATA_GROUP = 0x7fe0;
const PIXEL_DATA_ELEMENTS: ReadonlySet<number> = new Set([0x0010, 0x0008, 0x0009]);

/** Explicit VRs with a 16-bit length (PS3.5 Table 7.1-2); every other VR has reserved bytes and 32 bits. */
const SHORT_VRS: ReadonlySet<string> = new Set([
  'AE',
  'AS',
  'AT',
  'CS',
  'DA',
  'DS',
  'DT',
  'FD',
  'FL',
  'IS',
  'LO',
  'LT',
  'PN',
  'SH',
  'SL',
  'SS',
  'ST',
  'TM',
  'UI',
  'UL',
  'US',
]);

/** Encoding of one nesting level: a UN value of undefined length is Implicit VR LE inside (PS3.5 §6.2.2). */
interface Encoding {
  readonly explicit: boolean;
  readonly littleEndian: boolean;
}

/** An open container: a sequence (items expected) or an item (elements expected). */
interface Frame {
  readonly kind: 'sequence' | 'item';
  readonly enc: Encoding;
  /** Offset where a defined-length container ends; undefined for undefined length (a delimiter ends it). */
  readonly end: number | undefined;
  /** A sequence of fragments (nested encapsulated pixel data, PS3.5 A.4): its items are bytes, not data sets. */
  readonly fragments?: boolean;
}

/** Bytes received so far, in one buffer that doubles as it grows (amortised O(n) for small chunks). */
class ByteBuffer {
  #buf = new Uint8Array(0);
  length = 0;

  get bytes(): Uint8Array {
    return this.#buf;
  }

  append(chunk: Uint8Array): void {
    if (this.length + chunk.byteLength > this.#buf.byteLength) {
      const next = new Uint8Array(Math.max(this.length + chunk.byteLength, this.#buf.byteLength * 2, 4096));
      next.set(this.#buf.subarray(0, this.length));
      this.#buf = next;
    }
    this.#buf.set(chunk, this.length);
    this.length += chunk.byteLength;
  }

  /** A copy, so the (possibly larger) growth buffer can be collected. */
  copy(start: number, end: number): Uint8Array {
    return this.#buf.slice(start, end);
  }
}

/** Pulls chunks from an iterator into a ByteBuffer. */
class Source {
  readonly data = new ByteBuffer();
  ended = false;
  constructor(private readonly it: AsyncIterator<Uint8Array>) {}

  /** Append the next chunk; false at the end of the input. */
  async more(): Promise<boolean> {
    if (this.ended) return false;
    let r: IteratorResult<Uint8Array>;
    try {
      r = await this.it.next();
    } catch (err: unknown) {
      this.ended = true;
      throw err instanceof DicomHeaderError
        ? err
        : new DicomHeaderError(HeaderFailure.Malformed, 'input stream failed', { cause: err });
    }
    if (r.done) {
      this.ended = true;
      return false;
    }
    if (r.value.byteLength > 0) this.data.append(r.value);
    return true;
  }

  /** Make `n` bytes available or throw `truncated` (what is the `what` being read). */
  async need(n: number, what: string): Promise<void> {
    while (this.data.length < n) {
      if (!(await this.more())) throw new DicomHeaderError(HeaderFailure.Truncated, `input ends inside ${what}`);
    }
  }
}

function u16(b: Uint8Array, at: number, le: boolean): number {
  const lo = le ? (b[at] as number) : (b[at + 1] as number);
  const hi = le ? (b[at + 1] as number) : (b[at] as number);
  return lo | (hi << 8);
}

function u32(b: Uint8Array, at: number, le: boolean): number {
  return le
    ? ((b[at] as number) | ((b[at + 1] as number) << 8) | ((b[at + 2] as number) << 16)) +
        (b[at + 3] as number) * 0x1000000
    : ((b[at + 3] as number) | ((b[at + 2] as number) << 8) | ((b[at + 1] as number) << 16)) +
        (b[at] as number) * 0x1000000;
}

const latin1 = new TextDecoder('latin1');
const hex4 = (n: number): string => n.toString(16).toUpperCase().padStart(4, '0');

function isVrByte(b: number | undefined): boolean {
  return b !== undefined && b >= 0x41 && b <= 0x5a;
}

/** Read the File Meta Information (always Explicit VR LE, PS3.10 §7.1); returns its end and the TS. */
async function readMeta(
  src: Source,
  max: number,
  totalBytes: number | undefined,
): Promise<{ end: number; ts: string }> {
  await src.need(132, 'the preamble');
  const b = src.data.bytes;
  if (b[128] !== 0x44 || b[129] !== 0x49 || b[130] !== 0x43 || b[131] !== 0x4d) {
    throw new DicomHeaderError(HeaderFailure.NotPart10, 'not a Part 10 file: no "DICM" prefix at offset 128');
  }
  await src.need(144, 'the File Meta Information');
  const m = src.data.bytes;
  if (u16(m, 132, true) !== 0x0002 || u16(m, 134, true) !== 0x0000 || m[136] !== 0x55 || m[137] !== 0x4c) {
    throw new DicomHeaderError(
      HeaderFailure.NotPart10,
      'File Meta Information does not start with its group length (0002,0000) UL',
    );
  }
  const end = 144 + u32(m, 140, true);
  if (totalBytes !== undefined && end > totalBytes) {
    throw new DicomLimitError(
      LimitViolation.ElementLengthExceedsData,
      `File Meta Information group length runs ${end - totalBytes} bytes past the end of the input`,
    );
  }
  if (end > max) throw new DicomHeaderError(HeaderFailure.TooLarge, `File Meta Information exceeds ${max} bytes`);
  await src.need(end, 'the File Meta Information');
  const meta = src.data.bytes;
  let pos = 144;
  let ts: string | undefined;
  while (pos + 8 <= end) {
    const group = u16(meta, pos, true);
    const element = u16(meta, pos + 2, true);
    if (!isVrByte(meta[pos + 4]) || !isVrByte(meta[pos + 5])) break;
    const vr = String.fromCharCode(meta[pos + 4] as number, meta[pos + 5] as number);
    const long = !SHORT_VRS.has(vr);
    const headerLen = long ? 12 : 8;
    if (pos + headerLen > end) break;
    const len = long ? u32(meta, pos + 8, true) : u16(meta, pos + 6, true);
    const valueEnd = pos + headerLen + len;
    if (len === UNDEFINED_LENGTH || valueEnd > end) {
      throw new DicomHeaderError(HeaderFailure.Malformed, 'File Meta Information element overruns its group length');
    }
    if (group === 0x0002 && element === 0x0010) {
      ts = latin1.decode(meta.subarray(pos + headerLen, valueEnd)).replace(/[\0 ]+$/, '');
    }
    pos = valueEnd;
  }
  if (ts === undefined || ts === '') {
    throw new DicomHeaderError(
      HeaderFailure.Malformed,
      'File Meta Information lacks a Transfer Syntax UID (0002,0010)',
    );
  }
  return { end, ts };
}

interface WalkResult {
  /** Offset (in the walked buffer) where the top-level pixel data element starts, or its end. */
  readonly headerEnd: number;
  readonly pixelData:
    | (Omit<PixelDataElement, 'elementOffset' | 'valueOffset' | 'dataSetValueOffset'> & {
        readonly at: number;
        readonly valueAt: number;
      })
    | undefined;
  readonly specificCharacterSet: string | null;
  /** Every top-level element before `headerEnd`: its tag (group << 16 | element) and first byte. */
  readonly topLevel: readonly { readonly tag: number; readonly at: number }[];
}

interface WalkBounds {
  /** Cap on the walked buffer's length (its absolute offset counts against the cap). */
  readonly max: number;
  readonly capBase: number;
  readonly limits: DicomLimits;
  /** Length of the walked input when known (not for an inflated stream). */
  readonly totalBytes: number | undefined;
  /** Compressed bytes read so far, for the inflation ratio (deflated data sets only). */
  readonly deflatedBytes?: () => number;
}

/**
 * Walk data set elements in `src` from `start` until the top-level pixel data element or the end
 * of the input, under `bounds`: the header cap, the DICOM limits and, when known, the input length.
 */
async function walkDataSet(src: Source, start: number, top: Encoding, bounds: WalkBounds): Promise<WalkResult> {
  const { max, capBase, limits, totalBytes } = bounds;
  const stack: Frame[] = [];
  let pos = start;
  let charset: string | null = null;
  let depth = 0;
  let elements = 0;
  const topLevel: { tag: number; at: number }[] = [];
  const cap = (n: number, what: string): void => {
    if (totalBytes !== undefined && n > totalBytes) {
      throw new DicomLimitError(
        LimitViolation.ElementLengthExceedsData,
        `${what} at offset ${pos} declares a length that runs ${n - totalBytes} bytes past the end of the input`,
      );
    }
    if (capBase + n > max) throw new DicomHeaderError(HeaderFailure.TooLarge, `${what} exceeds ${max} bytes`);
    if (bounds.deflatedBytes) checkInflation(src.data.length, bounds.deflatedBytes(), limits);
  };
  const counted = (): void => {
    elements++;
    if (elements > limits.maxElements) {
      throw new DicomLimitError(LimitViolation.TooManyElements, `more than ${limits.maxElements} data elements`);
    }
  };
  const openSequence = (enc: Encoding, end: number | undefined, fragments = false): void => {
    depth++;
    if (depth > limits.maxSequenceDepth) {
      throw new DicomLimitError(
        LimitViolation.SequenceTooDeep,
        `sequences nest deeper than ${limits.maxSequenceDepth} levels`,
      );
    }
    stack.push({ kind: 'sequence', enc, end, fragments });
  };
  const close = (): void => {
    if (stack.pop()?.kind === 'sequence') depth--;
  };
  for (;;) {
    // Defined-length containers end at their offset; an element running past it breaks the structure.
    for (let f = stack[stack.length - 1]; f?.end !== undefined && pos >= f.end; f = stack[stack.length - 1]) {
      if (pos > f.end) {
        throw new DicomHeaderError(
          HeaderFailure.Malformed,
          `an element overruns its ${f.kind}'s length at offset ${pos}`,
        );
      }
      close();
    }
    const frame = stack[stack.length - 1];
    const enc = frame?.enc ?? top;
    const le = enc.littleEndian;
    // End of input is the end of the data set only between top-level elements.
    if (src.data.length < pos + 4) {
      while (src.data.length < pos + 4 && (await src.more())) {
        /* pull */
      }
      if (src.data.length === pos && stack.length === 0)
        return { headerEnd: pos, pixelData: undefined, specificCharacterSet: charset, topLevel };
      if (src.data.length < pos + 4)
        throw new DicomHeaderError(HeaderFailure.Truncated, 'input ends inside an element tag');
    }
    let b = src.data.bytes;
    const group = u16(b, pos, le);
    const element = u16(b, pos + 2, le);

    if (group === 0xfffe) {
      // Item and delimiters carry no VR in any transfer syntax (PS3.5 §7.5).
      cap(pos + 8, 'an item header');
      await src.need(pos + 8, 'an item header');
      b = src.data.bytes;
      const len = u32(b, pos + 4, le);
      if (element === ITEM && frame?.kind === 'sequence') {
        counted();
        if (len !== UNDEFINED_LENGTH) cap(pos + 8 + len, 'an item');
        if (frame.fragments && len !== UNDEFINED_LENGTH) {
          await src.need(pos + 8 + len, 'a fragment');
          pos += 8 + len;
          continue;
        }
        stack.push({ kind: 'item', enc, end: len === UNDEFINED_LENGTH ? undefined : pos + 8 + len });
        pos += 8;
        continue;
      }
      // Delimiters end only undefined-length containers (PS3.5 §7.5.1, §7.5.2).
      if (element === ITEM_DELIMITATION && frame?.kind === 'item' && frame.end === undefined) {
        close();
        pos += 8;
        continue;
      }
      if (element === SEQUENCE_DELIMITATION && frame?.kind === 'sequence' && frame.end === undefined) {
        close();
        pos += 8;
        continue;
      }
      throw new DicomHeaderError(
        HeaderFailure.Malformed,
        `(FFFE,${hex4(element)}) out of place at offset ${pos}${frame ? ` inside a ${frame.kind}` : ' at the top level'}`,
      );
    }
    if (frame?.kind === 'sequence') {
      throw new DicomHeaderError(
        HeaderFailure.Malformed,
        `(${hex4(group)},${hex4(element)}) inside a sequence, not in an item`,
      );
    }

    let vr: string | undefined;
    let headerLen: number;
    let len: number;
    if (enc.explicit) {
      await src.need(pos + 6, 'an element header');
      b = src.data.bytes;
      if (!isVrByte(b[pos + 4]) || !isVrByte(b[pos + 5])) {
        throw new DicomHeaderError(
          HeaderFailure.Malformed,
          `(${hex4(group)},${hex4(element)}) has no explicit VR at offset ${pos}`,
        );
      }
      vr = String.fromCharCode(b[pos + 4] as number, b[pos + 5] as number);
      headerLen = SHORT_VRS.has(vr) ? 8 : 12;
      await src.need(pos + headerLen, 'an element header');
      b = src.data.bytes;
      len = headerLen === 8 ? u16(b, pos + 6, le) : u32(b, pos + 8, le);
    } else {
      headerLen = 8;
      await src.need(pos + 8, 'an element header');
      b = src.data.bytes;
      len = u32(b, pos + 4, le);
    }

    if (stack.length === 0 && group === PIXEL_DATA_GROUP && PIXEL_DATA_ELEMENTS.has(element)) {
      return {
        headerEnd: pos,
        pixelData: {
          tag: `${hex4(group)}${hex4(element)}`,
          vr,
          length: len === UNDEFINED_LENGTH ? undefined : len,
          at: pos,
          valueAt: pos + headerLen,
        },
        specificCharacterSet: charset,
        topLevel,
      };
    }

    if (stack.length === 0) topLevel.push({ tag: ((group << 16) | element) >>> 0, at: pos });
    counted();
    if (len === UNDEFINED_LENGTH) {
      // SQ, UN (Implicit VR LE inside, PS3.5 §6.2.2) or a nested encapsulated value: items until a delimiter.
      const inner: Encoding = vr === 'UN' ? { explicit: false, littleEndian: true } : enc;
      cap(pos + headerLen, 'an element header');
      // Pixel data nested in an item (an Icon Image Sequence, PS3.3 C.7.6.1.1.6) holds fragments.
      const fragments = group === PIXEL_DATA_GROUP || (vr !== undefined && vr !== 'SQ' && vr !== 'UN');
      openSequence(inner, undefined, fragments);
      pos += headerLen;
      continue;
    }
    const end = pos + headerLen + len;
    cap(end, `the value of (${hex4(group)},${hex4(element)})`);
    if (group !== PIXEL_DATA_GROUP && (await isDefinedLengthSequence(src, vr, pos + headerLen, len, le))) {
      openSequence(enc, end);
      pos += headerLen;
      continue;
    }
    await src.need(end, `the value of (${hex4(group)},${hex4(element)})`);
    if (stack.length === 0 && group === 0x0008 && element === 0x0005) {
      const text = latin1.decode(src.data.bytes.subarray(pos + headerLen, end));
      const terms = text.split('\\').map((t) => t.replace(/[\0 ]+$/, '').replace(/^ +/, ''));
      charset = terms.some((t) => t !== '') ? terms.join('\\') : null;
    }
    pos = end;
  }
}

/**
 * A defined-length sequence: SQ in an explicit VR; in Implicit VR (no VR on the wire, no dictionary
 * here) a value that starts with an Item tag (FFFE,E000), as dcmjs's dictionary would read a
 * sequence. Such a value is walked item by item rather than skipped, so its nesting counts.
 */
async function isDefinedLengthSequence(
  src: Source,
  vr: string | undefined,
  valueAt: number,
  len: number,
  le: boolean,
): Promise<boolean> {
  if (vr !== undefined) return vr === 'SQ';
  if (len < 8) return false;
  await src.need(valueAt + 4, 'a value');
  const b = src.data.bytes;
  return u16(b, valueAt, le) === 0xfffe && u16(b, valueAt + 2, le) === ITEM;
}

/** Raw-inflate `first` and the rest of `rest` (PS3.5 A.5), as chunks. */
function inflated(
  first: Uint8Array,
  rest: AsyncIterator<Uint8Array>,
  counter: { bytes: number },
): AsyncIterator<Uint8Array> {
  async function* input(): AsyncGenerator<Uint8Array> {
    counter.bytes += first.byteLength;
    if (first.byteLength > 0) yield first;
    for (;;) {
      const r = await rest.next();
      if (r.done) return;
      counter.bytes += r.value.byteLength;
      yield r.value;
    }
  }
  const inflater = pipeline(Readable.from(input(), { objectMode: false }), createInflateRaw(), () => undefined);
  const it = (inflater as AsyncIterable<Uint8Array>)[Symbol.asyncIterator]();
  return {
    next: async () => {
      try {
        return await it.next();
      } catch (err: unknown) {
        // zlib reports input that stops mid-stream as Z_BUF_ERROR ("unexpected end of file").
        const truncated = (err as { code?: unknown } | null)?.code === 'Z_BUF_ERROR';
        throw new DicomHeaderError(
          truncated ? HeaderFailure.Truncated : HeaderFailure.Malformed,
          truncated ? 'input ends inside the deflated data set' : 'deflated data set cannot be inflated',
          { cause: err },
        );
      }
    },
    return: async () => {
      inflater.destroy();
      return { done: true, value: undefined };
    },
  };
}

/**
 * Read the header of a Part 10 stream. Throws DicomHeaderError (dicom-invalid) when the input is
 * not Part 10, ends before Pixel Data inside an element, breaks the structure or exceeds the cap,
 * and DicomError (dicom-invalid) when dcmjs cannot read the header bytes.
 */
export async function readPart10Header(
  source: AsyncIterable<Uint8Array>,
  options: ReadHeaderOptions = {},
): Promise<Part10Header> {
  const max = options.maxHeaderBytes ?? DEFAULT_MAX_HEADER_BYTES;
  const limits = options.limits ?? DEFAULT_DICOM_LIMITS;
  const totalBytes = options.totalBytes;
  const it = source[Symbol.asyncIterator]();
  const src = new Source(it);
  let inner: AsyncIterator<Uint8Array> | undefined;
  try {
    const meta = await readMeta(src, max, totalBytes);
    const ts = meta.ts;
    if (ts === TransferSyntax.DeflatedExplicitVrLittleEndian) {
      // Walk the inflated data set; dcmjs gets the meta bytes and the header re-deflated, which it inflates again.
      const counter = { bytes: 0 };
      inner = inflated(src.data.copy(meta.end, src.data.length), it, counter);
      const dataSrc = new Source(inner);
      const walk = await walkDataSet(
        dataSrc,
        0,
        { explicit: true, littleEndian: true },
        { max, capBase: meta.end, limits, totalBytes: undefined, deflatedBytes: () => counter.bytes },
      );
      const prefix = concat(src.data.copy(0, meta.end), deflateRawSync(dataSrc.data.bytes.subarray(0, walk.headerEnd)));
      return finish(prefix, ts, walk, walk.headerEnd, meta.end, false);
    }
    const enc: Encoding =
      ts === TransferSyntax.ImplicitVrLittleEndian
        ? { explicit: false, littleEndian: true }
        : { explicit: true, littleEndian: ts !== TransferSyntax.ExplicitVrBigEndian };
    const walk = await walkDataSet(src, meta.end, enc, { max, capBase: 0, limits, totalBytes });
    const prefix = options.keepTopLevel
      ? selectTopLevel(src.data.bytes, meta.end, walk, options.keepTopLevel)
      : src.data.copy(0, walk.headerEnd);
    return finish(prefix, ts, walk, walk.headerEnd - meta.end, meta.end, true);
  } finally {
    await inner?.return?.();
    await it.return?.();
  }
}

/** The preamble and meta, then only the kept top-level elements, in their order: what dcmjs reads. */
function selectTopLevel(bytes: Uint8Array, metaEnd: number, walk: WalkResult, keep: ReadonlySet<number>): Uint8Array {
  const ranges: [number, number][] = [];
  let size = metaEnd;
  walk.topLevel.forEach((e, i) => {
    if (!keep.has(e.tag)) return;
    const end = walk.topLevel[i + 1]?.at ?? walk.headerEnd;
    ranges.push([e.at, end]);
    size += end - e.at;
  });
  const out = new Uint8Array(size);
  out.set(bytes.subarray(0, metaEnd), 0);
  let o = metaEnd;
  for (const [a, b] of ranges) {
    out.set(bytes.subarray(a, b), o);
    o += b - a;
  }
  return out;
}

function concat(a: Uint8Array, b: Uint8Array): Uint8Array {
  const out = new Uint8Array(a.byteLength + b.byteLength);
  out.set(a, 0);
  out.set(b, a.byteLength);
  return out;
}

function finish(
  prefix: Uint8Array,
  ts: string,
  walk: WalkResult,
  headerBytes: number,
  dataSetOffset: number,
  inFile: boolean,
): Part10Header {
  const instance = parsePart10(prefix);
  const p = walk.pixelData;
  return {
    instance,
    transferSyntaxUid: ts,
    specificCharacterSet: walk.specificCharacterSet,
    pixelData: p
      ? {
          tag: p.tag,
          vr: p.vr,
          length: p.length,
          elementOffset: inFile ? p.at : undefined,
          valueOffset: inFile ? p.valueAt : undefined,
          dataSetValueOffset: inFile ? p.valueAt - dataSetOffset : p.valueAt,
        }
      : undefined,
    headerBytes,
    dataSetOffset,
  };
}
