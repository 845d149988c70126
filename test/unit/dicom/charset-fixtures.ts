import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import type { NaturalDataset } from '../../../src/dicom/dataset.js';
import { FIXTURES_DIR } from '../../../src/runtime-paths.js';

/** The character-set fixtures (test/fixtures/charsets/README.md) and their committed references. */

export const CHARSET_FIXTURES = path.join(FIXTURES_DIR, 'charsets');

export interface CharsetReference {
  readonly file: string;
  readonly specificCharacterSet: string;
  /** Patient's Name values (document order, nested too) after DCMTK `dcmconv +U8`; undefined when it refused. */
  readonly dcmconv: readonly string[] | undefined;
  readonly dcmconvNote: string;
  readonly pydicom: readonly string[];
}

export function charsetReferences(): CharsetReference[] {
  const lines = readFileSync(path.join(CHARSET_FIXTURES, 'expected.tsv'), 'utf8').trimEnd().split('\n').slice(1);
  return lines.map((l) => {
    const [file, cs, u8, note, py] = l.split('\t');
    return {
      file: file as string,
      specificCharacterSet: cs ?? '',
      dcmconv: u8 ? (JSON.parse(u8) as string[]) : undefined,
      dcmconvNote: note ?? '',
      pydicom: JSON.parse(py ?? '[]') as string[],
    };
  });
}

export function charsetFixtureFiles(): string[] {
  return readdirSync(CHARSET_FIXTURES)
    .filter((f) => f.endsWith('.dcm'))
    .sort();
}

/**
 * Where neither DCMTK 3.6.7 (glibc iconv) nor pydicom 3.0.2 converts correctly, the expected value and
 * the tool that produced it. ISO_IR 203 / ISO 2022 IR 203 (ISO 8859-15) is unknown to both
 * (pydicom falls back to ISO 8859-1, DCMTK refuses); glibc `iconv -f ISO-8859-15` gives this.
 */
export const OTHER_REFERENCE: Readonly<Record<string, { names: string[]; by: string }>> = {
  'derived_IR203.dcm': { names: ['Œuvre^Šárka'], by: 'iconv -f ISO-8859-15 (glibc 2.36)' },
  'derived_2022IR203.dcm': { names: ['Œuvre^Šárka'], by: 'iconv -f ISO-8859-15 (glibc 2.36)' },
};

/**
 * pydicom 3.0.2 results known to be wrong, so they are not used as references: ISO 2022 IR 58 leaves the
 * escape sequences in the text (dcmconv converts it correctly: PS3.5 Annex K.2 gives 张^小东).
 */
export const PYDICOM_WRONG: ReadonlySet<string> = new Set([
  'derived_2022IR58.dcm',
  'derived_IR203.dcm',
  'derived_2022IR203.dcm',
]);

/** A Person Name in its string form with empty trailing component groups dropped (dcmconv keeps "=", dcmjs does not). */
export function canonicalPn(s: string): string {
  return s
    .split('\\')
    .map((v) => v.replace(/=+$/, ''))
    .join('\\');
}

/** A naturalized PN value (dcmjs: array of {Alphabetic, Ideographic, Phonetic}) as a Part 5 string. */
export function pnString(v: unknown): string {
  const list = Array.isArray(v) ? v : [v];
  return canonicalPn(
    list
      .map((x) => {
        if (typeof x === 'string') return x;
        const o = x as { Alphabetic?: string; Ideographic?: string; Phonetic?: string };
        return [o.Alphabetic ?? '', o.Ideographic ?? '', o.Phonetic ?? ''].join('=');
      })
      .join('\\'),
  );
}

/** Every Patient's Name in document order, nested items included. */
export function patientNames(ds: NaturalDataset): string[] {
  const out: string[] = [];
  const walk = (d: NaturalDataset) => {
    for (const [k, v] of Object.entries(d)) {
      if (k === 'PatientName') out.push(pnString(v));
      else if (Array.isArray(v) && k.endsWith('Sequence'))
        for (const item of v) if (item && typeof item === 'object') walk(item as NaturalDataset);
    }
  };
  walk(ds);
  return out;
}
