import { spawnSync } from 'node:child_process';
import { copyFileSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { listAudit } from '../../src/audit/audit-log.js';
import { AuditRecorder } from '../../src/audit/audit-recorder.js';
import { parsePart10 } from '../../src/dicom/dataset.js';
import { buildDraftSr } from '../../src/dicom/sr/draft-sr.js';
import { FolderDestination } from '../../src/export/sr-destination.js';
import { SrExportLedger } from '../../src/export/sr-export-ledger.js';
import { rootLogger } from '../../src/logger.js';
import { exportDraft } from '../../src/pipeline/draft-export.js';
import { backendName, type TestDatabase, testDatabase } from '../support/db.js';
import {
  CHARSET_FIXTURES,
  canonicalPn,
  charsetReferences,
  OTHER_REFERENCE,
  PYDICOM_WRONG,
} from '../unit/dicom/charset-fixtures.js';
import { ALGORITHM, fixtureBytes, paramsFor } from '../unit/dicom/sr/sr-fixtures.js';

/**
 * [REQ-SR-CHARSET] [REQ-SR-SOURCE-ATTRS] Against real peers: DCMTK converts each charset fixture now
 * as the committed reference says (dcmconv +U8); the SR made from each holds the name DCMTK reads
 * back (dcmdump) and passes dciodvfy; a source whose Study Date is in the ACR-NEMA form (made with
 * dcmodify) gets a valid SR with 19930412, and the export's audit event names the normalised tag.
 * DCMTK / dicom3tools steps are skipped only when the tool is missing.
 */

function has(tool: string): boolean {
  return spawnSync('sh', ['-c', `command -v ${tool}`]).status === 0;
}
const HAVE_DCMTK = has('dcmconv') && has('dcmdump') && has('dcmodify');
const HAVE_DCIODVFY = has('dciodvfy');
if (!HAVE_DCMTK) console.warn('sr-source-attributes: DCMTK not on PATH: skipping dcmconv / dcmdump / dcmodify checks');
if (!HAVE_DCIODVFY) console.warn('sr-source-attributes: dciodvfy not on PATH: skipping IOD validation');

/** Warnings kept, as in sr-validators.int.test.ts (Device UID predates dicom3tools 20220618; UTF-8 VR checker). */
const KEPT_WARNINGS = [
  /^Warning - Attribute is not present in standard DICOM IOD - \(0x0018,0x1002\) UI Device UID\s*$/,
  /^Warning - Dicom dataset contains attributes not present in standard DICOM IOD - this is a Standard Extended SOP Class$/,
  /^W: The VR checker does not support this Specific Character Set: ISO_IR 192$/,
  // The charset fixtures carry these Type 2 attributes empty (chrFren and its derivatives); the SR copies them empty.
  /^Warning - Missing attribute or value that would be needed to build DICOMDIR - (Study Date|Study Time|Study ID)$/,
  // Single-component names (chrGreek, chrRuss, chrKoreanMulti …) are the sources' own; copied as they are.
  /^Warning - Value dubious for this VR - \(0x0010,0x0010\) PN Patient's Name {2}PN \[1\] = <[^>]*> - Retired Person Name form$/,
];

function dciodvfyProblems(file: string): string[] {
  const r = spawnSync('dciodvfy', [file], { encoding: 'utf8' });
  const lines = `${r.stdout}\n${r.stderr}`
    .split('\n')
    .map((l) => l.trimEnd())
    .filter((l) => l.length > 0);
  return lines.filter((l) => !/^Comprehensive(3D)?SR$/.test(l) && !KEPT_WARNINGS.some((re) => re.test(l)));
}

/** Patient's Name values as dcmdump prints them (raw bytes of a UTF-8 file, so UTF-8 text). */
function dcmdumpNames(file: string): string[] {
  const out = spawnSync('dcmdump', ['+L', '+P', '0010,0010', file]).stdout as Buffer;
  return out
    .toString('utf8')
    .split('\n')
    .filter((l) => l.includes('(0010,0010)'))
    .map((l) => /\[(.*)\]\s+#/.exec(l)?.[1] ?? '');
}

let dir: string;
/** CT_small.dcm with Study Date / Time rewritten by DCMTK dcmodify into the ACR-NEMA forms. */
let source: string;
beforeAll(() => {
  dir = mkdtempSync(path.join(tmpdir(), 'rs-sr-src-'));
  source = path.join(dir, 'CT_small_1993.dcm');
  writeFileSync(source, fixtureBytes('CT_small.dcm'));
  if (HAVE_DCMTK) {
    const r = spawnSync('dcmodify', ['-nb', '-m', '(0008,0020)=1993.04.12', '-m', '(0008,0030)=09:30:00', source], {
      encoding: 'utf8',
    });
    if (r.status !== 0) throw new Error(`dcmodify failed: ${r.stderr}`);
  }
});
afterAll(() => {
  rmSync(dir, { recursive: true, force: true });
});

const NOT_IMAGES = new Set(['chrSQEncoding.dcm', 'chrSQEncoding1.dcm']);
const refs = charsetReferences();

describe('charset fixtures through DCMTK and into the SR', () => {
  (HAVE_DCMTK ? it.each(refs.map((r) => [r.file, r] as const)) : it.skip.each(refs.map((r) => [r.file, r] as const)))(
    '%s: dcmconv +U8 here gives the committed reference',
    (file, ref) => {
      const out = path.join(dir, `u8-${file}`);
      const r = spawnSync('dcmconv', ['+U8', path.join(CHARSET_FIXTURES, file), out], { encoding: 'utf8' });
      if (ref.dcmconv === undefined) {
        expect(r.status).not.toBe(0);
      } else {
        expect(r.status).toBe(0);
        expect(dcmdumpNames(out)).toEqual(ref.dcmconv);
      }
    },
  );

  const cases = refs.filter((r) => !NOT_IMAGES.has(r.file)).map((r) => [r.file, r] as const);
  (HAVE_DCMTK ? it.each(cases) : it.skip.each(cases))(
    '%s: the SR holds the converted name (as dcmdump reads it), no ESC, and passes dciodvfy',
    (file, ref) => {
      const header = parsePart10(new Uint8Array(readFileSync(path.join(CHARSET_FIXTURES, file))), {
        untilPixelData: true,
      }).dataset;
      const sr = buildDraftSr(paramsFor([header], ['Befund unauffällig.']));
      const out = path.join(dir, `sr-${file}`);
      writeFileSync(out, sr.part10);
      expect(sr.part10.includes(0x1b)).toBe(false);
      const expected = ref.dcmconv ?? OTHER_REFERENCE[file]?.names ?? (PYDICOM_WRONG.has(file) ? [] : ref.pydicom);
      expect(dcmdumpNames(out).map(canonicalPn)).toEqual([canonicalPn(expected[0] ?? '')]);
      if (HAVE_DCIODVFY) expect(dciodvfyProblems(out)).toEqual([]);
    },
  );
});

describe('sources whose names cannot be decoded (charsets/undecodable/)', () => {
  const files = ['no_charset_8bit.dcm', 'unknown_escape.dcm', 'unknown_term.dcm'];
  (HAVE_DCMTK ? it.each(files) : it.skip.each(files))(
    '%s: dcmconv +U8 refuses it too; our SR leaves the name empty and passes dciodvfy',
    (file) => {
      const src = path.join(CHARSET_FIXTURES, 'undecodable', file);
      expect(spawnSync('dcmconv', ['+U8', src, path.join(dir, `u8-bad-${file}`)]).status).not.toBe(0);
      const header = parsePart10(new Uint8Array(readFileSync(src)), { untilPixelData: true }).dataset;
      const sr = buildDraftSr(paramsFor([header], ['x']));
      const out = path.join(dir, `sr-bad-${file}`);
      writeFileSync(out, sr.part10);
      expect(dcmdumpNames(out)).toEqual(['']);
      if (HAVE_DCIODVFY) expect(dciodvfyProblems(out)).toEqual([]);
    },
  );
});

describe('a legacy-dated source (ACR-NEMA YYYY.MM.DD, PS3.5 6.2)', () => {
  (HAVE_DCMTK ? it : it.skip)('gets an SR dated 19930412 that dciodvfy accepts', () => {
    const header = parsePart10(new Uint8Array(readFileSync(source)), { untilPixelData: true }).dataset;
    expect(header.StudyDate).toBe('1993.04.12');
    const sr = buildDraftSr(paramsFor([header], ['Keine Fraktur.']));
    const out = path.join(dir, 'sr-1993.dcm');
    writeFileSync(out, sr.part10);
    const dump = spawnSync('dcmdump', ['+P', '0008,0020', '+P', '0008,0030', out], { encoding: 'utf8' }).stdout;
    expect(dump).toMatch(/\(0008,0020\) DA \[19930412\]/);
    expect(dump).toMatch(/\(0008,0030\) TM \[093000\]/);
    if (HAVE_DCIODVFY) expect(dciodvfyProblems(out)).toEqual([]);
  });

  describe(`exported by the pipeline (${backendName()})`, () => {
    let db: TestDatabase;
    beforeEach(async () => {
      db = await testDatabase();
    });
    afterEach(async () => {
      await db.close();
    });

    (HAVE_DCMTK ? it : it.skip)('the export audit event names the normalised tags, without values', async () => {
      const header = parsePart10(new Uint8Array(readFileSync(source)), { untilPixelData: true }).dataset;
      const study = String(header.StudyInstanceUID);
      const { rows } = await db.pool.query<{ id: string }>(
        "INSERT INTO jobs (kind, study_instance_uid) VALUES ('describe-study', $1) RETURNING id",
        [study],
      );
      const out = path.join(dir, 'export');
      const result = await exportDraft(
        {
          identity: { ...ALGORITHM, fixture: false, prompt: 'Describe.', provider: 'cpu' },
          routes: [],
          defaultDestination: 'folder',
          destinations: new Map([
            ['folder', { destination: new FolderDestination('folder', out), srProfile: 'report', pdfCompanion: false }],
          ]),
          recorder: new AuditRecorder(db.pool),
          ledger: new SrExportLedger(db.pool),
        },
        { id: Number(rows[0]?.id), studyInstanceUid: study },
        {
          described: {
            selected: 1,
            findings: [
              { sopClassUid: String(header.SOPClassUID), sopInstanceUid: String(header.SOPInstanceUID), text: 'x' },
            ],
            sources: [header],
            skipped: [],
          },
          studyModalities: ['CT'],
        },
        rootLogger(),
      );
      const written = parsePart10(
        new Uint8Array(readFileSync(path.join(out, study, `${result.srSopInstanceUid}.dcm`))),
      );
      expect(written.dataset.StudyDate).toBe('19930412');
      const events = await listAudit(db.pool, { kind: 'sr-exported', limit: 10 }, 'test');
      expect(events).toHaveLength(1);
      expect(events[0]?.detail.sourceAttributes).toEqual([
        { tag: '(0008,0020)', keyword: 'StudyDate', action: 'normalised', reason: 'retired-format' },
        { tag: '(0008,0030)', keyword: 'StudyTime', action: 'normalised', reason: 'retired-format' },
      ]);
      expect(JSON.stringify(events[0]?.detail)).not.toContain('1993');
    });
  });
});

describe('radscribe sr with a legacy-dated source', () => {
  (HAVE_DCMTK ? it : it.skip)('exits 0, writes StudyDate 19930412 and says which tag it normalised', () => {
    const src = path.join(dir, 'cli-1993.dcm');
    copyFileSync(source, src);
    const out = path.join(dir, 'cli-sr.dcm');
    const { DATABASE_URL: _omit, ...env } = process.env;
    const r = spawnSync(
      path.join(__dirname, '../../bin/radscribe'),
      ['sr', '--source', src, '--text', 'Keine Fraktur.', '--out', out],
      { env, encoding: 'utf8', timeout: 60_000 },
    );
    expect(r.stderr).toContain('sr: source attribute (0008,0020) StudyDate normalised (retired-format)');
    expect(r.status).toBe(0);
    expect(parsePart10(new Uint8Array(readFileSync(out))).dataset.StudyDate).toBe('19930412');
    expect(r.stderr + r.stdout).not.toContain('1993.04.12');
  });
});
