import { dayPart, splitPart, toDA, toTM, windowMatchKeys, windowParts } from '../../../src/pacs/qido-window.js';

/**
 * StudyDate/StudyTime keys of the QIDO-RS poller's windows (issue 11; PS3.4 C.2.2.2.5: without
 * combined date-time matching the two ranges match independently, so a window across midnight is
 * split per day). Local time, as the gateway writes DA/TM.
 */
const at = (y: number, mo: number, d: number, h = 0, mi = 0, s = 0) => new Date(y, mo - 1, d, h, mi, s);

describe('windowParts / windowMatchKeys', () => {
  it('one day: StudyDate plus a StudyTime range whose end takes the fractions of its last second', () => {
    expect(windowMatchKeys(at(2026, 12, 4, 14, 30, 5), at(2026, 12, 4, 15, 0, 0))).toEqual([
      { StudyDate: '20261204', StudyTime: '143005-150000.999999' },
    ]);
  });

  it('across midnight: the first day from its start, the last day up to its end', () => {
    expect(windowMatchKeys(at(2026, 12, 3, 23, 0), at(2026, 12, 4, 1, 0))).toEqual([
      { StudyDate: '20261203', StudyTime: '230000-235959.999999' },
      { StudyDate: '20261204', StudyTime: '000000-010000.999999' },
    ]);
  });

  it('several days: whole days between as one StudyDate range without StudyTime', () => {
    const parts = windowParts(at(2026, 11, 28, 12), at(2026, 12, 2, 6));
    expect(parts.map((p) => p.keys)).toEqual([
      { StudyDate: '20261128', StudyTime: '120000-235959.999999' },
      { StudyDate: '20261129-20261201' },
      { StudyDate: '20261202', StudyTime: '000000-060000.999999' },
    ]);
    expect(parts.map((p) => p.byDay)).toEqual([false, true, false]);
  });

  it('a start after the end is taken as the end (a clock that stepped back)', () => {
    expect(windowMatchKeys(at(2026, 12, 4, 16), at(2026, 12, 4, 15))).toEqual([
      { StudyDate: '20261204', StudyTime: '150000-150000.999999' },
    ]);
  });

  it('toDA / toTM are PS3.5 DA and TM', () => {
    expect(toDA(at(2026, 1, 2, 3, 4, 5))).toBe('20260102');
    expect(toTM(at(2026, 1, 2, 3, 4, 5))).toBe('030405');
  });
});

describe('splitPart (a search at the PACS maximum is searched again in halves)', () => {
  it('a day range splits by days, covering every day once', () => {
    const halves = splitPart(dayPart(at(2026, 11, 1), at(2026, 11, 30)));
    expect(halves?.map((h) => h.keys)).toEqual([
      { StudyDate: '20261101-20261115' },
      { StudyDate: '20261116-20261130' },
    ]);
  });

  it('one day splits by time at noon', () => {
    const halves = splitPart(dayPart(at(2026, 11, 5), at(2026, 11, 5)));
    expect(halves?.map((h) => h.keys)).toEqual([
      { StudyDate: '20261105', StudyTime: '000000-115959.999999' },
      { StudyDate: '20261105', StudyTime: '120000-235959.999999' },
    ]);
  });

  it('a time range splits at its midpoint, the halves adjacent; two seconds cannot be narrowed', () => {
    const [p] = windowParts(at(2026, 11, 5, 10), at(2026, 11, 5, 11));
    const halves = splitPart(p as NonNullable<typeof p>);
    expect(halves?.map((h) => h.keys)).toEqual([
      { StudyDate: '20261105', StudyTime: '100000-103000.999999' },
      { StudyDate: '20261105', StudyTime: '103001-110000.999999' },
    ]);
    const [tiny] = windowParts(at(2026, 11, 5, 10, 0, 0), at(2026, 11, 5, 10, 0, 1));
    expect(splitPart(tiny as NonNullable<typeof tiny>)).toBeNull();
  });
});
