import { evenlySpaced, type ImageCandidate, selectFrames } from '../../../src/pipeline/frame-selection.js';

const cand = (sop: string, modality: string, series: string, n: number, frames = 1): ImageCandidate => ({
  sopInstanceUid: sop,
  seriesInstanceUid: series,
  sopClassUid: '1.2.840.10008.5.1.4.1.1.6.1',
  modality,
  instanceNumber: n,
  numberOfFrames: frames,
  hasPixelData: true,
});

describe('selectFrames', () => {
  const policy = { eachImage: ['CR', 'DX', 'MG', 'US', 'XA'], perSeriesSlices: 1 };
  it('US cine: the middle frame by default, N evenly spaced frames when configured', () => {
    const us = cand('1', 'US', 's1', 1, 96);
    expect(selectFrames([us], policy).map((s) => s.frameIndex)).toEqual([48]);
    expect(selectFrames([us], { ...policy, multiFrameFrames: 3 }).map((s) => s.frameIndex)).toEqual(
      evenlySpaced(96, 3),
    );
  });
  it('CT: the middle slice of a series by Instance Number; CR: every image', () => {
    const ct = [3, 1, 2, 5, 4].map((n) => cand(`ct${n}`, 'CT', 's2', n));
    const cr = [cand('cr1', 'CR', 's3', 1), cand('cr2', 'CR', 's3', 2)];
    const sel = selectFrames([...ct, ...cr], policy).map((s) => s.candidate.sopInstanceUid);
    expect(sel).toEqual(['ct3', 'cr1', 'cr2']);
  });
});
