import { readFileSync } from 'node:fs';
import path from 'node:path';
import { parsePart10 } from '../../src/dicom/dataset.js';
import { buildDraftSr } from '../../src/dicom/sr/draft-sr.js';
import { DicomwebClient } from '../../src/pacs/dicomweb-client.js';
import { type OrthancHandle, orthancAvailable, startOrthanc } from '../support/orthanc.js';
import {
  CHARSET_FIXTURES,
  canonicalPn,
  charsetReferences,
  OTHER_REFERENCE,
  PYDICOM_WRONG,
  pnString,
} from '../unit/dicom/charset-fixtures.js';
import { paramsFor } from '../unit/dicom/sr/sr-fixtures.js';

/**
 * [REQ-SR-CHARSET] A real PACS reads the names: the draft SR of a source in each PS3.3 C.12.1.1.2
 * character set is stored in Orthanc over STOW-RS, and Orthanc's own WADO-RS metadata (its decoding
 * of our ISO_IR 192 file) holds the name DCMTK dcmconv +U8 (else pydicom) gives for the source.
 * Each SR goes to its own study (the derived fixtures share chrFren's Study Instance UID).
 */
const avail = orthancAvailable();
if (!avail.ok) console.warn(`sr-charsets-orthanc e2e skipped: ${avail.reason}`);
const d = avail.ok ? describe : describe.skip;

const NOT_IMAGES = new Set(['chrSQEncoding.dcm', 'chrSQEncoding1.dcm']);
const cases = charsetReferences()
  .filter((r) => !NOT_IMAGES.has(r.file))
  .map((r, i) => [r.file, r, i] as const);

d('draft SRs from every character set, read back by Orthanc', () => {
  let orthanc: OrthancHandle;
  let client: DicomwebClient;
  beforeAll(async () => {
    orthanc = await startOrthanc();
    client = new DicomwebClient({
      baseUrl: orthanc.baseUrl,
      auth: { type: 'basic', ...orthanc.auth },
      timeoutMs: 20_000,
    });
  });
  afterAll(async () => {
    await orthanc?.stop();
  });

  test.each(cases)('%s', async (file, ref, i) => {
    const header = parsePart10(new Uint8Array(readFileSync(path.join(CHARSET_FIXTURES, file))), {
      untilPixelData: true,
    }).dataset;
    const studyUid = `${String(header.StudyInstanceUID)}.${i + 1}`;
    const sr = buildDraftSr(paramsFor([{ ...header, StudyInstanceUID: studyUid }], ['Befund unauffällig.']));
    const stow = await client.storeInstances(studyUid, [sr.part10]);
    expect(stow.failed).toEqual([]);
    const meta = await client.retrieveStudyMetadata(studyUid);
    const inst = meta.find(
      (m) => (m['00080018'] as { Value?: unknown[] } | undefined)?.Value?.[0] === sr.sopInstanceUid,
    );
    expect(inst).toBeDefined();
    const name = (inst?.['00100010'] as { Value?: unknown[] } | undefined)?.Value ?? [];
    const expected = ref.dcmconv ?? OTHER_REFERENCE[file]?.names ?? (PYDICOM_WRONG.has(file) ? [] : ref.pydicom);
    expect(pnString(name)).toBe(canonicalPn(expected[0] ?? ''));
    expect(pnString(name)).not.toBe('');
  });
});
