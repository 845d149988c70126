import type { DecodedFrame } from '../../../src/dicom/pixel-decoder.js';
import { renderFrame } from '../../../src/dicom/render.js';
import { expandSegmentedLut, SegmentType } from '../../../src/dicom/segmented-lut.js';
import { DicomError, ErrorCode } from '../../../src/errors.js';

/** PS3.3 C.7.9.2 segment expansion, and the refusals that keep a malformed palette from rendering wrong colours. */

const { Discrete, Linear, Indirect } = SegmentType;
const expand = (words: number[], entries: number): number[] =>
  Array.from(expandSegmentedLut(Uint16Array.from(words), entries, 'Red Palette Color LUT'));

function refusal(words: number[], entries: number): DicomError {
  try {
    expandSegmentedLut(Uint16Array.from(words), entries, 'Red Palette Color LUT');
  } catch (err) {
    if (err instanceof DicomError) return err;
    throw err;
  }
  throw new Error('expected a DicomError');
}

describe('expandSegmentedLut (PS3.3 C.7.9.2)', () => {
  it('discrete segments are copied as they are', () => {
    expect(expand([Discrete, 3, 10, 20, 30], 3)).toEqual([10, 20, 30]);
  });

  it('a linear segment runs from the previous entry to y1 over n entries (C.7.9.2.2)', () => {
    expect(expand([Discrete, 1, 0, Linear, 4, 100], 5)).toEqual([0, 25, 50, 75, 100]);
    expect(expand([Discrete, 1, 100, Linear, 2, 0], 3)).toEqual([100, 50, 0]);
  });

  it('an indirect segment repeats earlier segments found at a byte offset (C.7.9.2.3)', () => {
    // Words 0..4: discrete 3 values; words 5..7: linear to 0; word 8: indirect 2 segments at byte 0.
    const words = [Discrete, 3, 1, 2, 3, Linear, 3, 0, Indirect, 2, 0, 0];
    expect(expand(words, 12)).toEqual([1, 2, 3, 2, 1, 0, 1, 2, 3, 2, 1, 0]);
  });

  it('pads with the last entry when the segments are shorter than the descriptor, truncates when longer', () => {
    expect(expand([Discrete, 2, 7, 9], 4)).toEqual([7, 9, 9, 9]);
    expect(expand([Discrete, 4, 1, 2, 3, 4], 2)).toEqual([1, 2]);
  });

  it.each([
    ['a linear segment first', [Linear, 4, 100], /starts with a linear segment/],
    ['an unknown segment type', [Discrete, 1, 5, 7, 1, 0], /unknown segment type 7/],
    ['a discrete segment past the data', [Discrete, 9, 1, 2], /runs past the data/],
    ['an indirect segment pointing forward', [Discrete, 1, 5, Indirect, 1, 40, 0], /must point back/],
    ['an odd byte offset', [Discrete, 1, 5, Indirect, 1, 1, 0], /must point back, even/],
    [
      'an indirect segment pointing at an indirect one',
      [Discrete, 1, 5, Indirect, 1, 0, 0, Indirect, 1, 6, 0],
      /points at another indirect segment/,
    ],
    ['a truncated linear segment', [Discrete, 1, 5, Linear, 2], /truncated/],
  ])('refuses %s with dicom-invalid', (_what, words, reason) => {
    const err = refusal(words, 8);
    expect(err.code).toBe(ErrorCode.DicomInvalid);
    expect(err.message).toMatch(reason);
    expect(err.message).toContain('Red Palette Color LUT');
  });

  it('a hostile repeat count costs no more than the LUT size', () => {
    // 65535 repeats of a 65535-entry linear segment would be 4e9 entries; the LUT has 16.
    const started = Date.now();
    const out = expand([Discrete, 1, 0, Linear, 0xffff, 0xffff, Indirect, 0xffff, 0, 0], 16);
    expect(out).toHaveLength(16);
    expect(Date.now() - started).toBeLessThan(1000);
  });
});

describe('palette rendering with segmented LUTs', () => {
  const frame = (data: number[]): DecodedFrame => ({
    rows: 1,
    columns: data.length,
    samplesPerPixel: 1,
    bitsAllocated: 8,
    bitsStored: 8,
    highBit: 7,
    pixelRepresentation: 0,
    photometricInterpretation: 'PALETTE COLOR',
    planarConfiguration: 0,
    data: Uint8Array.from(data),
  });
  const le = (words: number[]): ArrayBuffer => {
    const b = new DataView(new ArrayBuffer(words.length * 2));
    words.forEach((w, i) => {
      b.setUint16(i * 2, w, true);
    });
    return b.buffer;
  };

  it('expands each channel to the descriptor size and takes the top 8 bits of 16-bit entries', () => {
    const d = {
      RedPaletteColorLookupTableDescriptor: [4, 0, 16],
      GreenPaletteColorLookupTableDescriptor: [4, 0, 16],
      BluePaletteColorLookupTableDescriptor: [4, 0, 16],
      SegmentedRedPaletteColorLookupTableData: le([Discrete, 1, 0, Linear, 3, 0xff00]),
      SegmentedGreenPaletteColorLookupTableData: le([Discrete, 4, 0x0100, 0x0200, 0x0300, 0x0400]),
      SegmentedBluePaletteColorLookupTableData: le([Discrete, 1, 0xffff, Linear, 3, 0xffff]),
    };
    const img = renderFrame(d, frame([0, 1, 2, 3]), 0);
    expect(Array.from(img.data)).toEqual([0, 1, 255, 85, 2, 255, 170, 3, 255, 255, 4, 255]);
  });

  it('a malformed segmented LUT is refused, not rendered', () => {
    const d = {
      RedPaletteColorLookupTableDescriptor: [4, 0, 16],
      GreenPaletteColorLookupTableDescriptor: [4, 0, 16],
      BluePaletteColorLookupTableDescriptor: [4, 0, 16],
      SegmentedRedPaletteColorLookupTableData: le([Linear, 3, 0xff00]),
      SegmentedGreenPaletteColorLookupTableData: le([Discrete, 1, 0]),
      SegmentedBluePaletteColorLookupTableData: le([Discrete, 1, 0]),
    };
    expect(() => renderFrame(d, frame([0]), 0)).toThrow(/Red Palette Color LUT: segmented LUT/);
  });
});

describe('enhanced multi-frame functional groups', () => {
  const mono = (): DecodedFrame => ({
    rows: 1,
    columns: 2,
    samplesPerPixel: 1,
    bitsAllocated: 16,
    bitsStored: 16,
    highBit: 15,
    pixelRepresentation: 0,
    photometricInterpretation: 'MONOCHROME2',
    planarConfiguration: 0,
    data: Uint16Array.from([0, 100]),
  });
  const voi = (c: number, w: number) => ({ FrameVOILUTSequence: [{ WindowCenter: c, WindowWidth: w }] });

  it('each frame uses its own Per-Frame Functional Groups window', () => {
    const d = { NumberOfFrames: 2, PerFrameFunctionalGroupsSequence: [voi(50, 50), voi(200, 10)] };
    expect(Array.from(renderFrame(d, mono(), 0).data)).toEqual([0, 255]);
    expect(Array.from(renderFrame(d, mono(), 1).data)).toEqual([0, 0]);
  });

  it('a per-frame sequence with fewer items than frames is refused (dcmjs drops empty items)', () => {
    const d = { NumberOfFrames: 3, PerFrameFunctionalGroupsSequence: [voi(50, 50), voi(200, 10)] };
    expect(() => renderFrame(d, mono(), 1)).toThrow(/has 2 items for 3 frames/);
  });
});
