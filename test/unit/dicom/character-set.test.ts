import { readFileSync } from 'node:fs';
import path from 'node:path';
import { CharacterSetTerm, decodeText, TextKind } from '../../../src/dicom/character-set.js';
import { parsePart10 } from '../../../src/dicom/dataset.js';
import {
  CHARSET_FIXTURES,
  canonicalPn,
  charsetFixtureFiles,
  charsetReferences,
  OTHER_REFERENCE,
  PYDICOM_WRONG,
  patientNames,
} from './charset-fixtures.js';

/**
 * [REQ-CHARSET] Every Specific Character Set term of PS3.3 C.12.1.1.2 decodes as another toolkit
 * converts it: DCMTK `dcmconv +U8` where it can (test/fixtures/charsets/expected.tsv), else pydicom.
 */

const refs = charsetReferences();
const bytes = (s: string) => Uint8Array.from(s, (c) => c.charCodeAt(0));

describe('charset fixtures against DCMTK dcmconv +U8 and pydicom', () => {
  it('has a committed reference for every fixture file', () => {
    expect(refs.map((r) => r.file)).toEqual(charsetFixtureFiles());
  });

  it('covers every defined term of PS3.3 C.12.1.1.2', () => {
    const used = new Set(refs.flatMap((r) => r.specificCharacterSet.split('\\').map((t) => t.trim())));
    expect(Object.values(CharacterSetTerm).filter((t) => !used.has(t))).toEqual([]);
  });

  it.each(refs.map((r) => [r.file, r] as const))('%s: Patient Name as the reference decodes it', (file, ref) => {
    const ds = parsePart10(new Uint8Array(readFileSync(path.join(CHARSET_FIXTURES, file)))).dataset;
    const names = patientNames(ds);
    const expected = ref.dcmconv ?? OTHER_REFERENCE[file]?.names ?? (PYDICOM_WRONG.has(file) ? undefined : ref.pydicom);
    expect(expected).toBeDefined();
    expect(names).toEqual((expected ?? []).map(canonicalPn));
    // A second toolkit agrees wherever it is not known to be wrong.
    if (ref.dcmconv && !PYDICOM_WRONG.has(file)) expect(ref.pydicom.map(canonicalPn)).toEqual(names);
    for (const n of names) {
      expect(n.includes('\x1b')).toBe(false);
      expect(n.includes('\ufffd')).toBe(false);
    }
  });
});

describe('decodeText', () => {
  it('resets G0 at PN component delimiters (PS3.5 6.1.2.5.3)', () => {
    const r = decodeText(bytes('\x1b$B;3ED\x1b(B^\x1b$BB@O:\x1b(B'), ['', 'ISO 2022 IR 87'], TextKind.PersonName);
    expect(r).toEqual({ text: '山田^太郎', lossy: false });
  });

  it('switches G1 between two single-byte sets inside one value', () => {
    const r = decodeText(
      bytes('J\xe9r\xf4me=\x1b-F\xc4\xe9'),
      ['ISO 2022 IR 100', 'ISO 2022 IR 126'],
      TextKind.PersonName,
    );
    expect(r.text).toBe('Jérôme=Δι');
  });

  it('decodes ISO-IR 100 as ISO 8859-1, not windows-1252 (0x80-0x9F are C1 controls)', () => {
    expect(decodeText(Uint8Array.of(0x41, 0x80, 0xe9), ['ISO_IR 100'], TextKind.MultiValued).text).toBe('A\u0080é');
  });

  it('marks undecodable input as lossy instead of guessing', () => {
    expect(decodeText(Uint8Array.of(0x41, 0xe9), [], TextKind.MultiValued)).toEqual({ text: 'A\ufffd', lossy: true });
    expect(decodeText(bytes('A\x1b$Zxx'), ['', 'ISO 2022 IR 87'], TextKind.MultiValued).lossy).toBe(true);
    expect(decodeText(Uint8Array.of(0xc3, 0x28), ['ISO_IR 192'], TextKind.MultiValued).lossy).toBe(true);
    expect(decodeText(Uint8Array.of(0xe9), ['ISO_IR 999'], TextKind.MultiValued).lossy).toBe(true);
  });

  it('keeps a U+FFFD the source encoded itself as not lossy (UTF-8)', () => {
    expect(decodeText(Uint8Array.of(0xef, 0xbf, 0xbd), ['ISO_IR 192'], TextKind.MultiValued).lossy).toBe(false);
  });
});

describe('JIS X 0201 Romaji (ISO_IR 13)', () => {
  it('reads 0x5C as YEN SIGN in text, but as the value delimiter of multi-valued VRs', () => {
    expect(decodeText(Uint8Array.of(0x31, 0x30, 0x5c, 0xb1), ['ISO_IR 13'], TextKind.Single).text).toBe('10¥ｱ');
    expect(decodeText(Uint8Array.of(0xb1, 0x5c, 0xb2), ['ISO_IR 13'], TextKind.PersonName).text).toBe('ｱ\\ｲ');
  });
});

describe('terms that take no code extensions', () => {
  it('decodes UTF-8 when ISO_IR 192 is followed by other terms', () => {
    const utf8 = new TextEncoder().encode('Wang^XiaoDong=王^小東');
    expect(decodeText(utf8, ['ISO_IR 192', 'ISO 2022 IR 87'], TextKind.PersonName)).toEqual({
      text: 'Wang^XiaoDong=王^小東',
      lossy: false,
    });
  });
});
