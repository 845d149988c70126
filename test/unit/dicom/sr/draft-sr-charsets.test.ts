import { readFileSync } from 'node:fs';
import path from 'node:path';
import { parsePart10 } from '../../../../src/dicom/dataset.js';
import { buildDraftSr } from '../../../../src/dicom/sr/draft-sr.js';
import {
  CHARSET_FIXTURES,
  canonicalPn,
  charsetReferences,
  OTHER_REFERENCE,
  PYDICOM_WRONG,
  pnString,
} from '../charset-fixtures.js';
import { paramsFor } from './sr-fixtures.js';

/**
 * [REQ-SR-CHARSET] The SR (ISO_IR 192) of a source in any PS3.3 C.12.1.1.2 character set holds the
 * Patient Name as DCMTK `dcmconv +U8` (else pydicom) converts it, and no ESC byte at all.
 * chrSQEncoding*.dcm are constructed data sets without SOP UIDs (no SR can be made from them); their
 * names live in a sequence item and are checked in character-set.test.ts.
 */
const NOT_IMAGES = new Set(['chrSQEncoding.dcm', 'chrSQEncoding1.dcm']);
const cases = charsetReferences().filter((r) => !NOT_IMAGES.has(r.file));

describe.each(['report', 'air'] as const)('draft SR (%s) from sources in every character set', (profile) => {
  it.each(cases.map((r) => [r.file, r] as const))('%s', (file, ref) => {
    const header = parsePart10(new Uint8Array(readFileSync(path.join(CHARSET_FIXTURES, file))), {
      untilPixelData: true,
    }).dataset;
    const sr = buildDraftSr({ ...paramsFor([header], ['Befund: unauffällig. 所見なし.']), profile });
    expect(sr.part10.includes(0x1b)).toBe(false);
    const back = parsePart10(sr.part10).dataset;
    expect(back.SpecificCharacterSet).toBe('ISO_IR 192');
    const expected = ref.dcmconv ?? OTHER_REFERENCE[file]?.names ?? (PYDICOM_WRONG.has(file) ? [] : ref.pydicom);
    expect(pnString(back.PatientName)).toBe(canonicalPn(expected[0] ?? ''));
    expect(pnString(back.PatientName)).not.toBe('');
    expect(sr.sourceAttributeNotes).toEqual([]);
  });
});

/**
 * Text that cannot be decoded (test/fixtures/charsets/undecodable/, made by make-derived.sh; DCMTK
 * dcmconv +U8 refuses each too): the source is read, the SR is still written, and Patient's Name
 * (Type 2) is present but empty, with a note naming the tag.
 */
const UNDECODABLE = ['no_charset_8bit.dcm', 'unknown_escape.dcm', 'unknown_term.dcm'];

describe('draft SR from sources whose names cannot be decoded', () => {
  it.each(UNDECODABLE)('%s: name dropped and noted, SR written', (file) => {
    const header = parsePart10(new Uint8Array(readFileSync(path.join(CHARSET_FIXTURES, 'undecodable', file))), {
      untilPixelData: true,
    }).dataset;
    expect(pnString(header.PatientName)).toContain('\ufffd');
    const sr = buildDraftSr(paramsFor([header], ['x']));
    expect(sr.part10.includes(0x1b)).toBe(false);
    const back = parsePart10(sr.part10).dataset;
    expect('PatientName' in back).toBe(true);
    expect(pnString(back.PatientName)).toBe('');
    expect(back.PatientID).toBe(`UNDECODABLE_${file.replace('.dcm', '')}`);
    expect(sr.sourceAttributeNotes).toEqual([
      { tag: '(0010,0010)', keyword: 'PatientName', action: 'emptied', reason: 'undecodable-text' },
    ]);
  });
});

describe('Procedure Reported (TID 1500) from a source code with undecodable text', () => {
  it('falls back to the modality instead of writing U+FFFD', () => {
    const header = parsePart10(new Uint8Array(readFileSync(path.join(CHARSET_FIXTURES, 'chrFren.dcm'))), {
      untilPixelData: true,
    }).dataset;
    const withProc = (meaning: string) => ({
      ...header,
      ProcedureCodeSequence: [{ CodeValue: 'RPID17', CodingSchemeDesignator: 'RADLEX', CodeMeaning: meaning }],
    });
    const proc = (meaning: string) =>
      JSON.stringify(buildDraftSr({ ...paramsFor([withProc(meaning)], ['a']), profile: 'air' }).content.toDataset());
    expect(proc('Thorax-Scanner')).toContain('RPID17');
    expect(proc('Thorax\ufffdScanner')).not.toContain('RPID17');
    expect(proc('Thorax\ufffdScanner')).not.toContain('\ufffd');
  });
});
