import { readFileSync } from 'node:fs';
import path from 'node:path';
import { type NaturalDataset, parsePart10 } from '../../../../src/dicom/dataset.js';
import type { DraftSrAlgorithm, DraftSrParams } from '../../../../src/dicom/sr/draft-sr.js';
import { FIXTURES_DIR } from '../../../../src/runtime-paths.js';

/** Shared inputs for the SR tests: real corpus headers (test/fixtures/dicom/ATTRIBUTION.tsv). */

export const DICOM_FIXTURES = path.join(FIXTURES_DIR, 'dicom');

export function fixtureBytes(name: string): Uint8Array {
  return new Uint8Array(readFileSync(path.join(DICOM_FIXTURES, name)));
}

/** Header of a corpus image, pixel data skipped. */
export function sourceHeader(name: string): NaturalDataset {
  return parsePart10(fixtureBytes(name), { untilPixelData: true }).dataset;
}

/**
 * Extra instances of the same study, derived from a real header: same patient/study, a new SOP
 * Instance UID and (optionally) a new series, as when a study has several images.
 */
export function sibling(base: NaturalDataset, n: number, newSeries = false): NaturalDataset {
  return {
    ...base,
    SOPInstanceUID: `${String(base.SOPInstanceUID)}.${n}`,
    ...(newSeries ? { SeriesInstanceUID: `${String(base.SeriesInstanceUID)}.${n}` } : {}),
  };
}

export const ALGORITHM: DraftSrAlgorithm = {
  name: 'Llama-3.2-11B-Vision-Instruct',
  version: '2024-09-25+int4',
  manufacturer: 'Meta (weights); RadScribe (integration)',
  deviceUid: '2.25.301138213465120474539916339421843421467',
  parameters: 'Describe the findings in this image for a radiologist.',
};

export const FIXED_NOW = new Date('2025-03-04T05:06:07.089Z');

export function paramsFor(sources: NaturalDataset[], texts: string[]): DraftSrParams {
  return {
    sources,
    findings: sources.slice(0, texts.length).map((s, i) => ({
      sopClassUid: String(s.SOPClassUID),
      sopInstanceUid: String(s.SOPInstanceUID),
      text: texts[i] as string,
    })),
    algorithm: ALGORITHM,
    now: FIXED_NOW,
  };
}
