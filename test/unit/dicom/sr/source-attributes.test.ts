import { parsePart10 } from '../../../../src/dicom/dataset.js';
import { buildDraftSr } from '../../../../src/dicom/sr/draft-sr.js';
import {
  COPIED_SOURCE_ATTRIBUTES,
  copySourceAttributes,
  normaliseDate,
  normaliseTime,
} from '../../../../src/dicom/sr/source-attributes.js';
import { TYPE2_COPIED, TYPE3_COPIED } from '../../../../src/dicom/sr/sr-document.js';
import { pnString } from '../charset-fixtures.js';
import { paramsFor, sourceHeader } from './sr-fixtures.js';

/**
 * [REQ-SR-SOURCE-ATTRS] Source attributes reach the SR in a form their VRs allow: retired ACR-NEMA
 * DA/TM forms normalised, unrepresentable values emptied (Type 2) or omitted (Type 3), each change
 * noted by tag and reason; the draft is never aborted for them.
 */

describe('normaliseDate (DA, PS3.5 6.2)', () => {
  it.each([
    ['19930412', '19930412', undefined],
    ['1993.04.12', '19930412', 'retired-format'],
    [' 20000229 ', '20000229', undefined],
  ])('%j → %s', (input, value, normalised) => {
    expect(normaliseDate(input)).toEqual({ ok: true, value, ...(normalised ? { normalised } : {}) });
  });
  it.each(['19930230', '19001329', '1993-04-12', '1993.0412', '930412', '19000229', 'unknown', '2023041'])(
    '%j is not a date',
    (input) => {
      expect(normaliseDate(input)).toEqual({ ok: false, reason: 'invalid-value' });
    },
  );
});

describe('normaliseTime (TM, PS3.5 6.2)', () => {
  it.each([
    ['101112.123456', '101112.123456', undefined],
    ['10', '10', undefined],
    ['1011', '1011', undefined],
    ['10:11:12.5', '101112.5', 'retired-format'],
    ['10:11', '1011', 'retired-format'],
    ['235960', '235960', undefined],
    ['101112.1234567', '101112.123456', 'fraction-truncated'],
  ])('%j → %s', (input, value, normalised) => {
    expect(normaliseTime(input)).toEqual({ ok: true, value, ...(normalised ? { normalised } : {}) });
  });
  it.each(['24', '1060', '101161', '10:1112', '10.5', 'noon', '1:02:03'])('%j is not a time', (input) => {
    expect(normaliseTime(input)).toEqual({ ok: false, reason: 'invalid-value' });
  });
});

describe('copySourceAttributes', () => {
  it('lists the same attributes the SR and PDF writers copy', () => {
    expect(COPIED_SOURCE_ATTRIBUTES.map((a) => a.keyword).sort()).toEqual([...TYPE2_COPIED, ...TYPE3_COPIED].sort());
  });

  it('copies clean values unchanged and notes nothing', () => {
    const ct = sourceHeader('CT_small.dcm');
    const { attributes, notes } = copySourceAttributes(ct);
    expect(notes).toEqual([]);
    for (const a of COPIED_SOURCE_ATTRIBUTES) {
      const v = ct[a.keyword];
      const empty = v === undefined || v === '' || (Array.isArray(v) && v.length === 0);
      expect(attributes[a.keyword]).toEqual(empty ? (a.type === 2 ? '' : undefined) : v);
    }
  });

  it('empties Type 2 and omits Type 3 values that cannot be represented, with tag and reason', () => {
    const { attributes, notes } = copySourceAttributes({
      PatientName: [{ Alphabetic: 'Yamada^Tarou', Ideographic: '\x1b$B;3ED\x1b(B' }],
      PatientID: 'X'.repeat(65),
      PatientBirthDate: '19930230',
      PatientSex: 'male',
      StudyDate: '1993.04.12',
      StudyTime: '10:11:12',
      AccessionNumber: 'A\ufffdB',
      StudyID: 'S1',
      PatientAge: '45',
      StudyDescription: 'CT Thorax',
      PatientIdentityRemoved: 'MAYBE',
      OtherPatientIDsSequence: [{ PatientID: 'bad\x1b(B' }],
    });
    expect(attributes).toEqual({
      PatientName: '',
      PatientID: '',
      PatientBirthDate: '',
      PatientSex: '',
      StudyDate: '19930412',
      StudyTime: '101112',
      ReferringPhysicianName: '',
      StudyID: 'S1',
      AccessionNumber: '',
      StudyDescription: 'CT Thorax',
    });
    expect(notes).toEqual([
      { tag: '(0010,0010)', keyword: 'PatientName', action: 'emptied', reason: 'undecodable-text' },
      { tag: '(0010,0020)', keyword: 'PatientID', action: 'emptied', reason: 'too-long' },
      { tag: '(0010,0030)', keyword: 'PatientBirthDate', action: 'emptied', reason: 'invalid-value' },
      { tag: '(0010,0040)', keyword: 'PatientSex', action: 'emptied', reason: 'invalid-value' },
      { tag: '(0008,0020)', keyword: 'StudyDate', action: 'normalised', reason: 'retired-format' },
      { tag: '(0008,0030)', keyword: 'StudyTime', action: 'normalised', reason: 'retired-format' },
      { tag: '(0008,0050)', keyword: 'AccessionNumber', action: 'emptied', reason: 'undecodable-text' },
      { tag: '(0010,1002)', keyword: 'OtherPatientIDsSequence', action: 'omitted', reason: 'undecodable-text' },
      { tag: '(0010,1010)', keyword: 'PatientAge', action: 'omitted', reason: 'invalid-value' },
      { tag: '(0012,0062)', keyword: 'PatientIdentityRemoved', action: 'omitted', reason: 'invalid-value' },
    ]);
  });

  it('counts characters, not UTF-16 units, against the 64-character PN component group limit', () => {
    const name = `${'𠀋'.repeat(32)}^${'𠀋'.repeat(31)}`; // 64 characters, 126 UTF-16 units
    expect(copySourceAttributes({ PatientName: [{ Alphabetic: name }] }).notes).toEqual([]);
    expect(copySourceAttributes({ PatientName: [{ Alphabetic: `${name}x` }] }).notes[0]?.reason).toBe('too-long');
  });
});

describe('buildDraftSr with legacy source values', () => {
  it('writes the SR of a study dated 1993.04.12 (ACR-NEMA form) as 19930412 and notes it', () => {
    const ct = { ...sourceHeader('CT_small.dcm'), StudyDate: '1993.04.12', StudyTime: '09:30:00.25' };
    const sr = buildDraftSr(paramsFor([ct], ['Keine Fraktur.']));
    const back = parsePart10(sr.part10).dataset;
    expect(back.StudyDate).toBe('19930412');
    expect(back.StudyTime).toBe('093000.25');
    expect(sr.sourceAttributeNotes).toEqual([
      { tag: '(0008,0020)', keyword: 'StudyDate', action: 'normalised', reason: 'retired-format' },
      { tag: '(0008,0030)', keyword: 'StudyTime', action: 'normalised', reason: 'retired-format' },
    ]);
  });

  it('writes an SR with the unrepresentable Type 2 attributes present and empty', () => {
    const ct = { ...sourceHeader('CT_small.dcm'), PatientBirthDate: '19931304', PatientSex: 'unknown' };
    const sr = buildDraftSr(paramsFor([ct], ['x']));
    const back = parsePart10(sr.part10).dataset;
    expect(back.PatientBirthDate).toBe('');
    expect(back.PatientSex).toBe('');
    expect('PatientBirthDate' in back && 'PatientSex' in back).toBe(true);
    expect(sr.sourceAttributeNotes.map((n) => n.keyword)).toEqual(['PatientBirthDate', 'PatientSex']);
  });
});

describe('no source value aborts the draft', () => {
  const ODD: unknown[] = [
    '1993.04.12',
    '10:11:12.123456789',
    'X'.repeat(200),
    'a\\b',
    'esc\x1b$B;3',
    '\ufffd',
    '   ',
    '',
    [],
    ['ok', 'x\x00y'],
    [{ Alphabetic: 'A'.repeat(65) }],
    [{ Alphabetic: 'Doe^John', Ideographic: 'é\x1b' }],
    { Alphabetic: 'Doe' },
    42,
    null,
    [{ CodeValue: 'c', CodingSchemeDesignator: 'DCM', CodeMeaning: 'm\x1b' }],
    [{ nested: [{ deeper: 'x' }] }],
  ];
  const ct = sourceHeader('CT_small.dcm');
  it.each(COPIED_SOURCE_ATTRIBUTES.map((a) => [a.keyword, a] as const))('%s', (keyword, attr) => {
    for (const v of ODD) {
      const sr = buildDraftSr(paramsFor([{ ...ct, [keyword]: v }], ['x']));
      const back = parsePart10(sr.part10).dataset;
      const note = sr.sourceAttributeNotes.find((n) => n.keyword === keyword);
      if (note && note.action !== 'normalised') {
        // Dropped: Type 2 present and empty, Type 3 absent.
        if (attr.type === 2) {
          expect(keyword in back).toBe(true);
          expect(attr.vr === 'PN' ? pnString(back[keyword]) : back[keyword]).toBe('');
        } else expect(back[keyword]).toBeUndefined();
      }
      expect(sr.part10.includes(0x1b)).toBe(false);
    }
  });
});
