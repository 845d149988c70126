import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { withUids } from '../../bench/support/stow-load.js';
import { type NaturalDataset, parsePart10 } from '../../src/dicom/dataset.js';

/**
 * dicom3tools `dciodvfy` for tests that validate a draft SR the gateway wrote (REQ-SR-VALID).
 *
 * Warnings we keep, and why:
 * - "Attribute is not present in standard DICOM IOD - (0x0018,0x1002) UI Device UID" and the follow-on
 *   "Standard Extended SOP Class": IHE AIR requires Device UID in the Contributing Equipment Sequence;
 *   dicom3tools 20220618 predates its addition there.
 * - "The VR checker does not support this Specific Character Set: ISO_IR 192": we need UTF-8 for model text.
 */
export const KEPT_DCIODVFY_WARNINGS = [
  /^Warning - Attribute is not present in standard DICOM IOD - \(0x0018,0x1002\) UI Device UID\s*$/,
  /^Warning - Dicom dataset contains attributes not present in standard DICOM IOD - this is a Standard Extended SOP Class$/,
  /^W: The VR checker does not support this Specific Character Set: ISO_IR 192$/,
];

export function hasTool(tool: string): boolean {
  return spawnSync('sh', ['-c', `command -v ${tool}`]).status === 0;
}

/** dciodvfy's verdict on a file: the IOD it recognised, its errors, and warnings not in the kept list. */
export function dciodvfy(file: string): { iod: string | undefined; errors: string[]; otherWarnings: string[] } {
  const r = spawnSync('dciodvfy', [file], { encoding: 'utf8' });
  const lines = `${r.stdout}\n${r.stderr}`
    .split('\n')
    .map((l) => l.trimEnd())
    .filter((l) => l.length > 0);
  return {
    iod: lines[0],
    errors: lines.filter((l) => /^(Error|E:)/.test(l)),
    otherWarnings: lines
      .slice(1)
      .filter((l) => !/^(Error|E:)/.test(l) && !KEPT_DCIODVFY_WARNINGS.some((re) => re.test(l))),
  };
}

/** DCMTK `dcmdump` of one element path, e.g. `(0040,a360)` nested items printed with +P. */
export function dcmdumpPaths(file: string, tagPath: string): string[] {
  const r = spawnSync('dcmdump', ['+P', tagPath, file], { encoding: 'utf8' });
  return r.stdout
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l.length > 0);
}

/** MR_small.dcm (pydicom test data) and its UIDs: instances of made-up studies and series are copies of it. */
export const MR_TEMPLATE_UIDS = {
  sop: '1.3.6.1.4.1.5962.1.1.4.1.1.20040826185059.5457',
  study: '1.3.6.1.4.1.5962.1.2.4.20040826185059.5457',
  series: '1.3.6.1.4.1.5962.1.3.4.1.20040826185059.5457',
} as const;

/** A copy of MR_small.dcm with the given study, series and SOP Instance UIDs (each as long as the template's). */
export function mrInstance(template: Buffer, ids: { study: string; series: string; sop: string }): Buffer {
  return withUids(
    template,
    new Map([
      [MR_TEMPLATE_UIDS.sop, ids.sop],
      [MR_TEMPLATE_UIDS.study, ids.study],
      [MR_TEMPLATE_UIDS.series, ids.series],
    ]),
  );
}

export function datasetOf(file: string): NaturalDataset {
  return parsePart10(readFileSync(file)).dataset;
}
