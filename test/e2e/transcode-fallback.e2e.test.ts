import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { instanceIdentity, parsePart10 } from '../../src/dicom/dataset.js';
import { decodeFrame } from '../../src/dicom/pixel-decoder.js';
import { TransferSyntax } from '../../src/dicom/uids.js';
import { DicomwebClient } from '../../src/pacs/dicomweb-client.js';
import { retrieveTranscoded } from '../../src/pipeline/transcode-fallback.js';
import { FIXTURES_DIR } from '../../src/runtime-paths.js';
import { type OrthancHandle, orthancAvailable, startOrthanc } from '../support/orthanc.js';

const avail = orthancAvailable();
if (!avail.ok) console.warn(`transcode-fallback e2e skipped: ${avail.reason}`);
const d = avail.ok ? describe : describe.skip;

// JPEG Full Progression (1.2.840.10008.1.2.4.55, retired): decoded here since issue 9 (libjpeg in
// dcmjs-codecs) and by Orthanc's DCMTK; the PACS's Explicit VR LE copy must carry the same values.
const FILE = path.join(FIXTURES_DIR, 'corpus', 'compressed', 'CTImage_jpeg_progressive_55_retired.dcm');
// Reference values of the same file (corpus MANIFEST ref_values_sha256, DCMTK dcmdjpeg).
const REF = '85e3b617e00dc755e55971bfe8770210f17d4909b17db5d71d2617e22254b3b9';

d('[REQ-PX-TS] transcode fallback through WADO-RS against a real Orthanc', () => {
  let orthanc: OrthancHandle;
  let client: DicomwebClient;
  beforeAll(async () => {
    orthanc = await startOrthanc();
    client = new DicomwebClient({
      baseUrl: orthanc.baseUrl,
      auth: { type: 'basic', ...orthanc.auth },
      timeoutMs: 20_000,
    });
    const res = await client.storeInstances(undefined, [FILE]);
    expect(res.failed).toEqual([]);
  });
  afterAll(async () => {
    await orthanc?.stop();
  });

  test('a .55 instance decodes exactly, here and from the PACS’s Explicit VR LE copy', async () => {
    const { createHash } = await import('node:crypto');
    const inst = parsePart10(await readFile(FILE));
    const local = await decodeFrame(inst, 0);
    expect(
      createHash('sha256')
        .update(new Uint8Array(local.data.buffer, local.data.byteOffset, local.data.byteLength))
        .digest('hex'),
    ).toBe(REF);
    const id = instanceIdentity(inst);
    const copy = await retrieveTranscoded(client, {
      studyInstanceUid: id.studyInstanceUid,
      seriesInstanceUid: id.seriesInstanceUid,
      sopInstanceUid: id.sopInstanceUid,
    });
    expect(copy.instance.transferSyntaxUid).toBe(TransferSyntax.ExplicitVrLittleEndian);
    expect(parsePart10(copy.bytes).transferSyntaxUid).toBe(TransferSyntax.ExplicitVrLittleEndian);
    const frame = await decodeFrame(copy.instance, 0);
    const h = createHash('sha256').update(
      new Uint8Array(frame.data.buffer, frame.data.byteOffset, frame.data.byteLength),
    );
    expect(h.digest('hex')).toBe(REF);
  });
});
