import { DicomError, ErrorCode } from '../errors.js';

/**
 * Segmented Palette Color Lookup Table Data (0028,1221–1223), PS3.3 C.7.9.2: a LUT written as a
 * sequence of segments, each `opcode, count, …` in 16-bit words (8-bit LUTs are not allowed
 * segmented, C.7.9.2). Expanded here to the plain LUT the Palette Color Lookup Table Descriptor
 * describes, so rendering can treat both forms alike.
 */

/** Segment types, PS3.3 C.7.9.2.1–3. */
export const SegmentType = {
  /** C.7.9.2.1: `0, n, y1 … yn` — n entries taken as they are. */
  Discrete: 0,
  /** C.7.9.2.2: `1, n, y1` — n entries on the line from the previous entry to y1. */
  Linear: 1,
  /** C.7.9.2.3: `2, n, offsetLow, offsetHigh` — repeat n segments found at a byte offset in the data. */
  Indirect: 2,
} as const;
export type SegmentType = (typeof SegmentType)[keyof typeof SegmentType];

function invalid(what: string, reason: string): DicomError {
  return new DicomError(ErrorCode.DicomInvalid, `${what}: segmented LUT (PS3.3 C.7.9.2) ${reason}`);
}

/**
 * Expand `words` (little-endian 16-bit words, the data element's value) to at most `entries` LUT
 * entries; the last entry is repeated when the segments describe fewer. Refuses malformed data
 * (unknown segment type, a linear segment first, an indirect segment pointing outside the data or
 * at another indirect segment) with DicomError(dicom-invalid): a wrong palette would be a silent
 * wrong answer.
 */
export function expandSegmentedLut(words: Uint16Array, entries: number, what: string): Uint16Array {
  const out = new Uint16Array(entries);
  let n = 0;
  const push = (v: number): void => {
    if (n < entries) out[n] = v;
    n++;
  };
  const last = (): number => {
    if (n === 0) throw invalid(what, 'starts with a linear segment (no previous entry)');
    return out[Math.min(n, entries) - 1] ?? 0;
  };
  /** Expand the segment at word `at`; returns the word after it. `nested`: called from an indirect segment. */
  const segment = (at: number, nested: boolean): number => {
    const type = words[at];
    const count = words[at + 1];
    if (type === undefined || count === undefined) throw invalid(what, `is truncated at word ${at}`);
    switch (type) {
      case SegmentType.Discrete: {
        if (at + 2 + count > words.length) throw invalid(what, `discrete segment at word ${at} runs past the data`);
        for (let k = 0; k < count; k++) push(words[at + 2 + k] ?? 0);
        return at + 2 + count;
      }
      case SegmentType.Linear: {
        const y1 = words[at + 2];
        if (y1 === undefined) throw invalid(what, `linear segment at word ${at} is truncated`);
        const y0 = last();
        for (let k = 1; k <= count && n < entries; k++) push(Math.round(y0 + ((y1 - y0) * k) / count));
        return at + 3;
      }
      case SegmentType.Indirect: {
        if (nested) throw invalid(what, `indirect segment at word ${at} points at another indirect segment`);
        const lo = words[at + 2];
        const hi = words[at + 3];
        if (lo === undefined || hi === undefined) throw invalid(what, `indirect segment at word ${at} is truncated`);
        const byteOffset = lo + hi * 0x10000;
        if (byteOffset % 2 !== 0 || byteOffset / 2 >= at) {
          throw invalid(what, `indirect segment at word ${at} has offset ${byteOffset} (must point back, even)`);
        }
        let p = byteOffset / 2;
        // Stop once the LUT is full: a hostile count must not cost more than `entries` pushes.
        for (let k = 0; k < count && n < entries; k++) p = segment(p, true);
        return at + 4;
      }
      default:
        throw invalid(what, `has unknown segment type ${type} at word ${at}`);
    }
  };
  // A trailing pad word (odd number of words is impossible, but a lone 0 can end the value) is ignored.
  let at = 0;
  while (at + 1 < words.length && n < entries) at = segment(at, false);
  if (n === 0) throw invalid(what, 'holds no entries');
  const fill = out[Math.min(n, entries) - 1] ?? 0;
  for (let k = n; k < entries; k++) out[k] = fill;
  return out;
}
