import path from 'node:path';
import { DicomwebClient } from '../../src/pacs/dicomweb-client.js';
import { FIXTURES_DIR } from '../../src/runtime-paths.js';
import { startOrthanc } from '../support/orthanc.js';
test('dbg', async () => {
  const o = await startOrthanc();
  const c = new DicomwebClient({ baseUrl: o.baseUrl, auth: { type: 'basic', ...o.auth } });
  for (const f of ['SC_rgb_rle.dcm', 'chrGerm.dcm', 'SC_rgb_rle.dcm']) {
    const r = await c.storeInstances(undefined, [path.join(FIXTURES_DIR, 'dicom', f)]);
    console.log(f, JSON.stringify(r));
  }
  const res = await fetch(`${o.restUrl}/instances`, { headers: { authorization: `Basic ${Buffer.from(`${o.auth.username}:${o.auth.password}`).toString('base64')}` } });
  console.log(await res.text());
  await o.stop();
});
