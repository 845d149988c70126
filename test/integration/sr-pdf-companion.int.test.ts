import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { parsePart10 } from '../../src/dicom/dataset.js';
import { buildEncapsulatedPdf, DRAFT_PDF_TITLE } from '../../src/dicom/pdf/encapsulated-pdf.js';
import { loadPdfFonts } from '../../src/dicom/pdf/fonts.js';
import { draftPdfSopInstanceUid } from '../../src/dicom/sr/draft-policy.js';
import { buildDraftSr } from '../../src/dicom/sr/draft-sr.js';
import { SopClass } from '../../src/dicom/uids.js';
import { FIXED_NOW, paramsFor, sibling, sourceHeader } from '../unit/dicom/sr/sr-fixtures.js';

/**
 * [REQ-SR-PDF] The Encapsulated PDF companion passes dciodvfy with no errors, and poppler's
 * `pdftotext` extracts the draft text, flags, disclaimer and algorithm identification from it,
 * non-ASCII included (é, ß, 日本語, 😀; characters no embedded font covers, such as 🫠, become "?"). Skipped only when a tool is missing.
 *
 * Warnings we keep: none beyond the SR's "VR checker does not support ISO_IR 192" and the
 * Device UID / Standard Extended SOP Class pair (see sr-validators.int.test.ts).
 */
function has(tool: string): boolean {
  return spawnSync('sh', ['-c', `command -v ${tool}`]).status === 0;
}
const HAVE_DCIODVFY = has('dciodvfy');
const HAVE_PDFTOTEXT = has('pdftotext');
if (!HAVE_PDFTOTEXT) console.warn('sr-pdf-companion: pdftotext (poppler-utils) not on PATH: skipping text extraction');

const KEPT_WARNINGS = [
  /^Warning - Attribute is not present in standard DICOM IOD - \(0x0018,0x1002\) UI Device UID\s*$/,
  /^Warning - Dicom dataset contains attributes not present in standard DICOM IOD - this is a Standard Extended SOP Class$/,
  /^W: The VR checker does not support this Specific Character Set: ISO_IR 192$/,
];

// 😀 (U+1F600) is in DejaVu Sans (monochrome); 🫠 (U+1FAE0, Unicode 14) is in no font we embed.
const TEXT = 'Kein Nachweis einer Fraktur. Ödem der Weichteile – café, Straße, 日本語のテキスト 😀 🫠';
const LONG = `${'Lorem ipsum dolor sit amet, consectetur adipiscing elit. '.repeat(120)}END-OF-LONG-FINDING`;

let dir: string;
beforeAll(() => {
  dir = mkdtempSync(path.join(tmpdir(), 'radscribe-pdf-'));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe.each(['report', 'air'] as const)('PDF companion of the %s profile', (profile) => {
  const ct = sourceHeader('CT_small.dcm');
  const sr = buildDraftSr({ ...paramsFor([ct, sibling(ct, 1), sibling(ct, 2)], [TEXT, LONG]), profile });
  let file: string;
  let pdfFile: string;
  let built: Awaited<ReturnType<typeof buildEncapsulatedPdf>>;
  beforeAll(async () => {
    built = await buildEncapsulatedPdf({ sr, fonts: loadPdfFonts(), now: FIXED_NOW });
    file = path.join(dir, `${profile}.pdf.dcm`);
    pdfFile = path.join(dir, `${profile}.pdf`);
    writeFileSync(file, built.part10);
    writeFileSync(pdfFile, built.pdf);
  });

  it('is an Encapsulated PDF in the SR series with a UID derived from the SR', () => {
    const ds = parsePart10(built.part10).dataset;
    expect(ds.SOPClassUID).toBe(SopClass.EncapsulatedPdfStorage);
    expect(built.sopInstanceUid).toBe(draftPdfSopInstanceUid(sr.sopInstanceUid));
    expect(built.sopInstanceUid).not.toBe(sr.sopInstanceUid);
    expect([ds.StudyInstanceUID, ds.SeriesInstanceUID]).toEqual([sr.studyInstanceUid, sr.seriesInstanceUid]);
    expect(ds.PatientID).toBe(ct.PatientID);
    expect(ds.MIMETypeOfEncapsulatedDocument).toBe('application/pdf');
    expect(ds.EncapsulatedDocumentLength).toBe(built.pdf.length);
    expect(ds.DocumentTitle).toBe(DRAFT_PDF_TITLE);
    expect(Buffer.from(built.pdf.subarray(0, 5)).toString('latin1')).toBe('%PDF-');
  });

  (HAVE_DCIODVFY ? it : it.skip)('passes dciodvfy without errors', () => {
    const r = spawnSync('dciodvfy', [file], { encoding: 'utf8' });
    const lines = `${r.stdout}\n${r.stderr}`
      .split('\n')
      .map((l) => l.trimEnd())
      .filter((l) => l.length > 0);
    expect(lines[0]).toBe('EncapsulatedPDF');
    expect(lines.filter((l) => /^(Error|E:)/.test(l))).toEqual([]);
    expect(lines.slice(1).filter((l) => !KEPT_WARNINGS.some((re) => re.test(l)))).toEqual([]);
  });

  (HAVE_PDFTOTEXT ? it : it.skip)('pdftotext shows text, flags, disclaimer and algorithm, non-ASCII intact', () => {
    const r = spawnSync('pdftotext', ['-enc', 'UTF-8', pdfFile, '-'], { encoding: 'utf8' });
    expect(r.status).toBe(0);
    // pdftotext breaks lines where the PDF does; compare with whitespace collapsed.
    const text = r.stdout.replace(/\s+/g, ' ');
    expect(text).toContain(DRAFT_PDF_TITLE);
    expect(text).toContain('Kein Nachweis einer Fraktur. Ödem der Weichteile – café, Straße, 日本語のテキスト 😀 ?');
    expect(text).toContain('END-OF-LONG-FINDING');
    expect(text).toContain('PRELIMINARY · UNVERIFIED (no verifying observer) · PARTIAL');
    expect(text).toContain('UNVERIFIED AI DRAFT. Generated automatically');
    expect(text).toContain(`Algorithm: ${sr.algorithm.name} ${sr.algorithm.version}`);
    expect(text).toContain(`Device UID: ${sr.algorithm.deviceUid}`);
    expect(text).toContain('Describe the findings in this image for a radiologist.');
  });
});
