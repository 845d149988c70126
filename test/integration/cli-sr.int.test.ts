import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { parsePart10 } from '../../src/dicom/dataset.js';
import { findingTexts, readSr } from '../../src/dicom/sr/reader.js';
import { writePart10 } from '../../src/dicom/sr/sr-document.js';
import { SopClass } from '../../src/dicom/uids.js';

/**
 * [REQ-SR-CLI] `radscribe sr` from a checkout (bin/radscribe → dist, after npm run build): writes the
 * SR of either profile for several sources, one text each or one for all, the PDF companion with
 * --pdf, and exits 2 on usage errors, 1 on a failure (unreadable source).
 */
const BIN = path.join(__dirname, '../../bin/radscribe');
const FIX = path.join(__dirname, '../fixtures/dicom');

function run(args: string[]) {
  const { DATABASE_URL: _omit, ...rest } = process.env;
  return spawnSync(BIN, ['sr', ...args], { env: rest, encoding: 'utf8', timeout: 60_000 });
}

describe('radscribe sr', () => {
  let dir: string;
  /** Two more images of CT_small's study (header copies with new SOP Instance UIDs, new series for one). */
  let ct2: string;
  let ct3: string;
  beforeAll(() => {
    dir = mkdtempSync(path.join(tmpdir(), 'rs-cli-sr-'));
    const full = parsePart10(new Uint8Array(readFileSync(path.join(FIX, 'CT_small.dcm'))), {
      untilPixelData: true,
    }).dataset;
    // The header attributes the SR reads (binary private values do not re-serialise through dcmjs).
    const keep = [
      'SOPClassUID',
      'SOPInstanceUID',
      'StudyInstanceUID',
      'SeriesInstanceUID',
      'Modality',
      'PatientName',
      'PatientID',
      'PatientBirthDate',
      'PatientSex',
      'StudyDate',
      'StudyTime',
      'StudyID',
      'AccessionNumber',
    ];
    const ct = Object.fromEntries(keep.filter((k) => full[k] !== undefined).map((k) => [k, full[k]]));
    ct2 = path.join(dir, 'ct2.dcm');
    ct3 = path.join(dir, 'ct3.dcm');
    writeFileSync(ct2, writePart10({ ...ct, SOPInstanceUID: `${String(ct.SOPInstanceUID)}.2` }));
    writeFileSync(
      ct3,
      writePart10({
        ...ct,
        SOPInstanceUID: `${String(ct.SOPInstanceUID)}.3`,
        SeriesInstanceUID: `${String(ct.SeriesInstanceUID)}.3`,
      }),
    );
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('writes a report-profile SR with one text per source', () => {
    const out = path.join(dir, 'report.dcm');
    const r = run([
      '--source',
      path.join(FIX, 'CT_small.dcm'),
      '--source',
      ct3,
      '--text',
      'Première — Straße 日本語',
      '--text',
      'Second finding',
      '--out',
      out,
    ]);
    expect(r.stderr).not.toMatch(/radscribe: /);
    expect(r.status).toBe(0);
    const doc = readSr(new Uint8Array(readFileSync(out)));
    expect(doc.sopClassUid).toBe(SopClass.ComprehensiveSrStorage);
    expect(findingTexts(doc).map((f) => f.text)).toEqual(['Première — Straße 日本語', 'Second finding']);
    expect(r.stdout).toContain(doc.sopInstanceUid);
  });

  it('writes an air-profile SR and its PDF companion (<out>.pdf.dcm) with one text for all sources', () => {
    const out = path.join(dir, 'air.dcm');
    // `--source a b` (several files after one flag) is accepted too.
    const r = run([
      '--profile',
      'air',
      '--pdf',
      '--source',
      path.join(FIX, 'CT_small.dcm'),
      ct2,
      '--text',
      'Für alle Bilder',
      '--out',
      out,
    ]);
    expect(r.stderr).not.toMatch(/radscribe: /);
    expect(r.status).toBe(0);
    const doc = readSr(new Uint8Array(readFileSync(out)));
    expect(doc.sopClassUid).toBe(SopClass.Comprehensive3dSrStorage);
    expect(doc.completionFlag).toBe('COMPLETE');
    expect(findingTexts(doc).map((f) => f.text)).toEqual(['Für alle Bilder', 'Für alle Bilder']);
    const pdfPath = path.join(dir, 'air.pdf.dcm');
    expect(existsSync(pdfPath)).toBe(true);
    const pdf = parsePart10(new Uint8Array(readFileSync(pdfPath))).dataset;
    expect(pdf.SOPClassUID).toBe(SopClass.EncapsulatedPdfStorage);
    expect(pdf.SeriesInstanceUID).toBe(doc.seriesInstanceUid);
  });

  it.each([
    [['--text', 'x', '--out', 'o.dcm'], '--source'],
    [['--source', 'a.dcm', '--out', 'o.dcm'], '--text'],
    [['--source', 'a.dcm', '--text', 'x'], '--out'],
    [['--source', 'a.dcm', '--text', 'x', '--profile', 'tid9999', '--out', 'o.dcm'], '--profile'],
    [
      ['--source', 'a.dcm', '--source', 'b.dcm', '--text', 'x', '--text', 'y', '--text', 'z', '--out', 'o.dcm'],
      '--text',
    ],
  ])('exits 2 on a usage error (%j)', (args, mention) => {
    const r = run(args);
    expect(r.status).toBe(2);
    expect(r.stderr).toContain(mention);
  });

  it('exits 1 when a source cannot be read', () => {
    const r = run(['--source', path.join(dir, 'missing.dcm'), '--text', 'x', '--out', path.join(dir, 'o.dcm')]);
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(/radscribe: /);
  });
});
