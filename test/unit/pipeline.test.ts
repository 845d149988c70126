import { evenlySpaced, type ImageCandidate, selectFrames } from '../../src/pipeline/frame-selection.js';
import { chooseDestination } from '../../src/pipeline/routing.js';

const img = (o: Partial<ImageCandidate> & { sopInstanceUid: string }): ImageCandidate => ({
  seriesInstanceUid: '1.2.1',
  sopClassUid: '1.2.840.10008.5.1.4.1.1.2',
  modality: 'CT',
  instanceNumber: null,
  numberOfFrames: 1,
  hasPixelData: true,
  ...o,
});

describe('frame selection', () => {
  it('spaces indices evenly and centred', () => {
    expect(evenlySpaced(5, 1)).toEqual([2]);
    expect(evenlySpaced(10, 2)).toEqual([2, 7]);
    expect(evenlySpaced(2, 5)).toEqual([0, 1]);
    expect(evenlySpaced(0, 1)).toEqual([]);
  });

  it('describes every projection image and the middle frame of a cine', () => {
    const sel = selectFrames(
      [
        img({ sopInstanceUid: '1.1', modality: 'CR', seriesInstanceUid: '1.9' }),
        img({ sopInstanceUid: '1.2', modality: 'CR', seriesInstanceUid: '1.9' }),
        img({ sopInstanceUid: '1.3', modality: 'US', numberOfFrames: 9 }),
      ],
      { eachImage: ['CR', 'US'], perSeriesSlices: 1 },
    );
    expect(sel.map((s) => [s.candidate.sopInstanceUid, s.frameIndex])).toEqual([
      ['1.3', 4],
      ['1.1', 0],
      ['1.2', 0],
    ]);
  });

  it('takes the middle slice of a CT series by instance number and skips non-images', () => {
    const cands = [5, 1, 4, 2, 3].map((n) => img({ sopInstanceUid: `1.${n}`, instanceNumber: n }));
    cands.push(img({ sopInstanceUid: '9.9', modality: 'SR', hasPixelData: false }));
    const sel = selectFrames(cands, { eachImage: ['CR'], perSeriesSlices: 1 });
    expect(sel.map((s) => s.candidate.sopInstanceUid)).toEqual(['1.3']);
  });

  it('spreads over the frames of one enhanced multi-frame object', () => {
    const sel = selectFrames([img({ sopInstanceUid: '1.1', modality: 'MR', numberOfFrames: 100 })], {
      eachImage: [],
      perSeriesSlices: 3,
    });
    expect(sel.map((s) => s.frameIndex)).toEqual([16, 50, 83]);
  });
});

describe('routing', () => {
  const routes = [
    { name: 'mg', match: { modality: ['MG'] }, destination: 'research' },
    { name: 'all', match: {}, destination: 'pacs' },
  ];
  it('first matching route wins', () => {
    expect(chooseDestination(routes, 'outbox', ['MG', 'CR'])).toBe('research');
    expect(chooseDestination(routes, 'outbox', ['CT'])).toBe('pacs');
    expect(chooseDestination(routes.slice(0, 1), 'outbox', ['CT'])).toBe('outbox');
  });
});
