import { readFileSync } from 'node:fs';
import path from 'node:path';
import { constants, deflateRawSync } from 'node:zlib';

/**
 * The hostile corpus of issue 9, generated (never committed): each input is a Part 10 instance built
 * to break one DICOM limit (src/dicom/limits.ts) or to contradict its own lengths, plus a real small
 * file (pydicom's CR_16x16_6154.dcm, test/fixtures/dicom/ATTRIBUTION.tsv) truncated at every offset.
 * `expect` is what the gateway must answer: the STOW-RS Failure Reason (PS3.18 §10.5.3) and, for a
 * broken limit, the violation the instance-refused audit event names.
 */

export const FIXTURE_DIR = path.resolve(__dirname, '../fixtures/dicom');
/** The real small file truncated at every offset: Explicit VR Little Endian, 16 × 16 × 16-bit CR. */
export const TRUNCATION_SOURCE = path.join(FIXTURE_DIR, 'CR_16x16_6154.dcm');

export const FailureReasons = { OutOfResources: 0xa700, CannotUnderstand: 0xc000 } as const;

export interface HostileInput {
  /** Input class, as the report's table names it. */
  readonly klass: string;
  readonly name: string;
  readonly bytes: Buffer;
  readonly sopInstanceUid?: string;
  readonly expect: { readonly failureReason: number; readonly violation?: string; readonly errorCode: string };
}

const EXPLICIT_LE = '1.2.840.10008.1.2.1';
const DEFLATED = '1.2.840.10008.1.2.1.99';
const JPEG_BASELINE = '1.2.840.10008.1.2.4.50';
const SC_IMAGE = '1.2.840.10008.5.1.4.1.1.7'; // Secondary Capture Image Storage (PS3.4 B.5)
const LONG_VRS = new Set(['OB', 'OD', 'OF', 'OL', 'OV', 'OW', 'SQ', 'SV', 'UC', 'UN', 'UR', 'UT', 'UV']);
const UNDEFINED = 0xffffffff;

/** One Explicit VR Little Endian element (PS3.5 §7.1.2); `length` overrides the declared length. */
export function el(group: number, element: number, vr: string, value: Buffer | string, length?: number): Buffer {
  let v = typeof value === 'string' ? Buffer.from(value, 'latin1') : value;
  if (v.length % 2 === 1) v = Buffer.concat([v, Buffer.from([vr === 'UI' ? 0 : 0x20])]);
  const long = LONG_VRS.has(vr);
  const head = Buffer.alloc(long ? 12 : 8);
  head.writeUInt16LE(group, 0);
  head.writeUInt16LE(element, 2);
  head.write(vr, 4, 'latin1');
  if (long) head.writeUInt32LE(length ?? v.length, 8);
  else head.writeUInt16LE(length ?? v.length, 6);
  return Buffer.concat([head, v]);
}

export const us = (n: number): Buffer => {
  const b = Buffer.alloc(2);
  b.writeUInt16LE(n);
  return b;
};

/** (FFFE,xxxx) item or delimiter with a 32-bit length (PS3.5 §7.5). */
function itemTag(element: number, length: number): Buffer {
  const b = Buffer.alloc(8);
  b.writeUInt16LE(0xfffe, 0);
  b.writeUInt16LE(element, 2);
  b.writeUInt32LE(length, 4);
  return b;
}
const ITEM = 0xe000;
const ITEM_DELIM = 0xe00d;
const SEQ_DELIM = 0xe0dd;

/** Preamble, "DICM" and File Meta Information (PS3.10 §7.1) for `ts`, then `dataSet` as given. */
export function part10(ts: string, sopInstanceUid: string, dataSet: Buffer): Buffer {
  const meta = Buffer.concat([
    el(0x0002, 0x0001, 'OB', Buffer.from([0, 1])),
    el(0x0002, 0x0002, 'UI', SC_IMAGE),
    el(0x0002, 0x0003, 'UI', sopInstanceUid),
    el(0x0002, 0x0010, 'UI', ts),
    el(0x0002, 0x0012, 'UI', '2.25.9'),
  ]);
  const groupLength = Buffer.alloc(4);
  groupLength.writeUInt32LE(meta.length);
  return Buffer.concat([
    Buffer.alloc(128),
    Buffer.from('DICM', 'latin1'),
    el(0x0002, 0x0000, 'UL', groupLength),
    meta,
    dataSet,
  ]);
}

let uidCounter = 0;
/** A fresh UID under 2.25 (PS3.5 B.2), unique within the run. */
export function newUid(): string {
  uidCounter++;
  return `2.25.${process.pid}${Date.now() % 1_000_000_000}${String(uidCounter).padStart(6, '0')}`;
}

interface Ids {
  readonly study: string;
  readonly series: string;
  readonly sop: string;
}

/** Identifying elements up to group 0020 (in tag order), one study per input unless given. */
function identity(ids: Ids): Buffer {
  return Buffer.concat([
    el(0x0008, 0x0016, 'UI', SC_IMAGE),
    el(0x0008, 0x0018, 'UI', ids.sop),
    el(0x0008, 0x0060, 'CS', 'OT'),
    el(0x0010, 0x0010, 'PN', 'HOSTILE^CORPUS'),
    el(0x0020, 0x000d, 'UI', ids.study),
    el(0x0020, 0x000e, 'UI', ids.series),
  ]);
}

function pixelModule(rows: number, columns: number, spp: number, bits: number, frames: number): Buffer {
  return Buffer.concat([
    el(0x0028, 0x0002, 'US', us(spp)),
    el(0x0028, 0x0004, 'CS', spp === 3 ? 'RGB' : 'MONOCHROME2'),
    ...(spp === 3 ? [el(0x0028, 0x0006, 'US', us(0))] : []),
    el(0x0028, 0x0008, 'IS', String(frames)),
    el(0x0028, 0x0010, 'US', us(rows)),
    el(0x0028, 0x0011, 'US', us(columns)),
    el(0x0028, 0x0100, 'US', us(bits)),
    el(0x0028, 0x0101, 'US', us(bits)),
    el(0x0028, 0x0102, 'US', us(bits - 1)),
    el(0x0028, 0x0103, 'US', us(0)),
  ]);
}

function freshIds(): Ids {
  return { study: newUid(), series: newUid(), sop: newUid() };
}

/**
 * A deflate bomb (PS3.5 A.5): a deflated data set whose Pixel Data is `pixelBytes` zeros. Built from
 * independently compressed blocks (each a fresh raw deflate stream ended by a full flush, so none
 * refers to another's window): one block of 1 MiB zeros is compressed once and repeated, so a 2 GiB
 * bomb costs about 2 MB and a millisecond to build.
 */
export function deflateBomb(pixelBytes = 2 * 1024 ** 3): { bytes: Buffer; sop: string } {
  const ids = freshIds();
  const MiB = 1024 * 1024;
  const frames = pixelBytes / (16384 * 16384);
  const header = Buffer.concat([
    identity(ids),
    pixelModule(16384, 16384, 1, 8, Math.max(1, Math.floor(frames))),
    el(0x7fe0, 0x0010, 'OB', Buffer.alloc(0), pixelBytes),
  ]);
  const flush = { finishFlush: constants.Z_FULL_FLUSH };
  const zeros = deflateRawSync(Buffer.alloc(MiB), flush);
  const blocks: Buffer[] = [deflateRawSync(header, flush)];
  for (let i = 0; i < Math.ceil(pixelBytes / MiB); i++) blocks.push(zeros);
  blocks.push(deflateRawSync(Buffer.alloc(0)));
  return { bytes: part10(DEFLATED, ids.sop, Buffer.concat(blocks)), sop: ids.sop };
}

/** `depth` sequences nested inside each other's first item (PS3.5 §7.5), of undefined or defined length. */
export function deepSequences(depth: number, defined: boolean): { bytes: Buffer; sop: string } {
  const ids = freshIds();
  // (0040,A730) Content Sequence nests within itself in SR trees (PS3.3 C.17.3); any SQ tag will do.
  let inner = el(0x0040, 0xa160, 'UT', 'leaf');
  for (let i = 0; i < depth; i++) {
    if (defined) {
      const item = Buffer.concat([itemTag(ITEM, inner.length), inner]);
      inner = Buffer.concat([el(0x0040, 0xa730, 'SQ', Buffer.alloc(0), item.length), item]);
    } else {
      inner = Buffer.concat([
        el(0x0040, 0xa730, 'SQ', Buffer.alloc(0), UNDEFINED),
        itemTag(ITEM, UNDEFINED),
        inner,
        itemTag(ITEM_DELIM, 0),
        itemTag(SEQ_DELIM, 0),
      ]);
    }
  }
  const dataSet = Buffer.concat([identity(ids), inner]);
  return { bytes: part10(EXPLICIT_LE, ids.sop, dataSet), sop: ids.sop };
}

/** A sequence of `items` empty items: many elements in a small file. */
export function manyElements(items: number): { bytes: Buffer; sop: string } {
  const ids = freshIds();
  const body = Buffer.alloc(items * 8);
  for (let i = 0; i < items; i++) {
    body.writeUInt16LE(0xfffe, i * 8);
    body.writeUInt16LE(ITEM, i * 8 + 2);
  }
  const dataSet = Buffer.concat([identity(ids), el(0x0040, 0xa730, 'SQ', Buffer.alloc(0), body.length), body]);
  return { bytes: part10(EXPLICIT_LE, ids.sop, dataSet), sop: ids.sop };
}

/** A private UN element declaring 0xFFFFFFF0 bytes in a file of a few hundred. */
export function hugeDeclaredLength(): { bytes: Buffer; sop: string } {
  const ids = freshIds();
  const dataSet = Buffer.concat([
    identity(ids),
    el(0x0029, 0x0010, 'LO', 'HOSTILE'),
    el(0x0029, 0x1001, 'UN', Buffer.alloc(16), 0xfffffff0),
  ]);
  return { bytes: part10(EXPLICIT_LE, ids.sop, dataSet), sop: ids.sop };
}

/** Pixel Data (7FE0,0010) declaring 0xFFFFFFF0 bytes with 16 present. */
export function hugePixelDataLength(): { bytes: Buffer; sop: string } {
  const ids = freshIds();
  const dataSet = Buffer.concat([
    identity(ids),
    pixelModule(16, 16, 1, 16, 1),
    el(0x7fe0, 0x0010, 'OW', Buffer.alloc(16), 0xfffffff0),
  ]);
  return { bytes: part10(EXPLICIT_LE, ids.sop, dataSet), sop: ids.sop };
}

/** 100 frames of 4096 × 4096 × 16 bits declared, 512 bytes of native Pixel Data present (its length honest). */
export function framesBeyondData(): { bytes: Buffer; sop: string } {
  const ids = freshIds();
  const dataSet = Buffer.concat([
    identity(ids),
    pixelModule(4096, 4096, 1, 16, 100),
    el(0x7fe0, 0x0010, 'OW', Buffer.alloc(512)),
  ]);
  return { bytes: part10(EXPLICIT_LE, ids.sop, dataSet), sop: ids.sop };
}

/** A JPEG Baseline frame declared 65535 × 65535 RGB (12.9 GB decoded) in a 64-byte fragment. */
export function hugeEncapsulatedFrame(): { bytes: Buffer; sop: string } {
  const ids = freshIds();
  const fragment = Buffer.concat([Buffer.from([0xff, 0xd8]), Buffer.alloc(60), Buffer.from([0xff, 0xd9])]);
  const dataSet = Buffer.concat([
    identity(ids),
    pixelModule(65535, 65535, 3, 8, 1),
    el(0x7fe0, 0x0010, 'OB', Buffer.alloc(0), UNDEFINED),
    itemTag(ITEM, 0),
    itemTag(ITEM, fragment.length),
    fragment,
    itemTag(SEQ_DELIM, 0),
  ]);
  return { bytes: part10(JPEG_BASELINE, ids.sop, dataSet), sop: ids.sop };
}

/** Study, series and SOP Instance UIDs of a generated instance, and its Instance Number (0020,0013). */
export interface InstanceIds {
  readonly study: string;
  readonly series: string;
  readonly sop: string;
  readonly instanceNumber?: number;
}

function identityWithNumber(ids: InstanceIds): Buffer {
  return Buffer.concat([
    identity(ids),
    ...(ids.instanceNumber !== undefined ? [el(0x0020, 0x0013, 'IS', String(ids.instanceNumber))] : []),
  ]);
}

/** A valid small instance (8 × 8 × 8 bits, or `size`²), of a fresh study unless `ids` name one. */
export function validInstance(ids: Partial<InstanceIds> = {}, size = 8): { bytes: Buffer; sop: string; study: string } {
  const full = { ...freshIds(), ...ids };
  const pixels = Buffer.alloc(size * size);
  for (let i = 0; i < pixels.length; i++) pixels[i] = (i * 7) & 0xff;
  const dataSet = Buffer.concat([
    identityWithNumber(full),
    pixelModule(size, size, 1, 8, 1),
    el(0x7fe0, 0x0010, 'OB', pixels),
  ]);
  return { bytes: part10(EXPLICIT_LE, full.sop, dataSet), sop: full.sop, study: full.study };
}

/**
 * An instance within every DICOM limit whose header is `items` × `perItem` text values of
 * `valueBytes` each (about 40 MB by default) in one sequence: parsing it costs a JavaScript heap of
 * several times that, so it exhausts a small image-prep worker heap (the crash that quarantines it),
 * and takes a second or more to parse in a large one (time to kill the process mid-decode).
 */
export function heapHeavyInstance(
  ids: Partial<InstanceIds> = {},
  items = 2000,
  perItem = 20,
  valueBytes = 1000,
): { bytes: Buffer; sop: string; study: string } {
  const full = { ...freshIds(), ...ids };
  const item = Buffer.concat(
    Array.from({ length: perItem }, (_, k) =>
      el(0x0009, 0x1000, 'UT', 'x'.repeat(valueBytes - 2) + String(k % 10).padStart(2, '0')),
    ).map((e, k) => {
      // Distinct ascending tags within the item: (0009,1000 + k) private UT under creator (0009,0010).
      e.writeUInt16LE(0x0009, 0);
      e.writeUInt16LE(0x1000 + k, 2);
      return e;
    }),
  );
  const withCreator = Buffer.concat([el(0x0009, 0x0010, 'LO', 'RADSCRIBE HEAVY'), item]);
  const seqBody = Buffer.concat(
    Array.from({ length: items }, () => Buffer.concat([itemTag(ITEM, withCreator.length), withCreator])),
  );
  const pixels = Buffer.alloc(64, 3);
  const dataSet = Buffer.concat([
    identityWithNumber(full),
    pixelModule(8, 8, 1, 8, 1),
    el(0x0040, 0xa730, 'SQ', Buffer.alloc(0), seqBody.length),
    seqBody,
    el(0x7fe0, 0x0010, 'OB', pixels),
  ]);
  return { bytes: part10(EXPLICIT_LE, full.sop, dataSet), sop: full.sop, study: full.study };
}

/** The generated inputs, one per class, with the answer each must get. */
export function hostileInputs(): HostileInput[] {
  const A700 = FailureReasons.OutOfResources;
  const C000 = FailureReasons.CannotUnderstand;
  const hostile = 'dicom-hostile';
  const make = (
    klass: string,
    name: string,
    built: { bytes: Buffer; sop: string },
    expect: HostileInput['expect'],
  ): HostileInput => ({ klass, name, bytes: built.bytes, sopInstanceUid: built.sop, expect });
  return [
    // Deflate compresses runs about 1032:1, so the ratio bound (200:1 past 64 MiB) trips first.
    make('deflate bomb (2 GiB from ~2 MB)', 'deflate-bomb', deflateBomb(), {
      failureReason: A700,
      violation: 'inflation-ratio',
      errorCode: hostile,
    }),
    make('10 000 nested sequences, undefined length', 'depth-undefined', deepSequences(10_000, false), {
      failureReason: A700,
      violation: 'sequence-too-deep',
      errorCode: hostile,
    }),
    make('10 000 nested sequences, defined length', 'depth-defined', deepSequences(10_000, true), {
      failureReason: A700,
      violation: 'sequence-too-deep',
      errorCode: hostile,
    }),
    make('300 000 elements (empty items)', 'element-count', manyElements(300_000), {
      failureReason: A700,
      violation: 'too-many-elements',
      errorCode: hostile,
    }),
    make('declared length 0xFFFFFFF0 (UN element)', 'declared-length', hugeDeclaredLength(), {
      failureReason: C000,
      violation: 'element-length-exceeds-data',
      errorCode: hostile,
    }),
    make('Pixel Data length 0xFFFFFFF0, 16 bytes present', 'pixel-length', hugePixelDataLength(), {
      failureReason: C000,
      errorCode: 'dicom-invalid',
    }),
    make('frames 100 × 4096² × 16 bit, 512 bytes present', 'frames-beyond-data', framesBeyondData(), {
      failureReason: C000,
      violation: 'frame-exceeds-data',
      errorCode: hostile,
    }),
    make('JPEG frame 65535² RGB declared (12.9 GB decoded)', 'decoded-frame', hugeEncapsulatedFrame(), {
      failureReason: A700,
      violation: 'decoded-frame-too-large',
      errorCode: hostile,
    }),
  ];
}

/** Top-level elements of an Explicit VR Little Endian file with defined lengths only: tag and end offset. */
export function topLevelElements(file: Buffer): { group: number; element: number; end: number }[] {
  const out: { group: number; element: number; end: number }[] = [];
  let pos = 144 + file.readUInt32LE(140);
  while (pos + 8 <= file.length) {
    const vr = file.toString('latin1', pos + 4, pos + 6);
    const long = LONG_VRS.has(vr);
    const len = long ? file.readUInt32LE(pos + 8) : file.readUInt16LE(pos + 6);
    const group = file.readUInt16LE(pos);
    const element = file.readUInt16LE(pos + 2);
    pos += (long ? 12 : 8) + len;
    out.push({ group, element, end: pos });
  }
  return out;
}

/**
 * Offsets at which a cut leaves a well-formed instance: the end of a top-level element at or after
 * the last identifying UID, Series Instance UID (0020,000E) (the source is Explicit VR Little Endian
 * with defined lengths only). A cut there is a shorter, valid instance (no receiver can tell); one
 * anywhere else is refused.
 */
export function wellFormedCuts(file: Buffer): Set<number> {
  const els = topLevelElements(file);
  const series = els.findIndex((e) => e.group === 0x0020 && e.element === 0x000e);
  return new Set(els.slice(series).map((e) => e.end));
}

/** The source file truncated at every offset 0 … size − 1. */
export function truncations(): { offset: number; bytes: Buffer }[] {
  const file = readFileSync(TRUNCATION_SOURCE);
  return Array.from({ length: file.length }, (_, offset) => ({ offset, bytes: file.subarray(0, offset) }));
}
