import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { errorHandler } from '../../src/app.js';
import { FailureReason } from '../../src/ingest/types.js';
import type { DicomJsonDataset } from '../../src/pacs/dicom-json.js';
import { getNumber, getSequence, getString, Tag } from '../../src/pacs/dicom-json.js';
import { multipartRelatedContentType, newBoundary } from '../../src/pacs/media-type.js';
import type { OutboundPart } from '../../src/pacs/multipart.js';
import { multipartBody } from '../../src/pacs/multipart.js';
import { createStowRouter } from '../../src/pacs/stow-router.js';
import { FIXTURES_DIR } from '../../src/runtime-paths.js';
import type { TestHttpServer } from '../support/http.js';
import { startTestServer } from '../support/http.js';
import { RecordingSink } from '../support/recording-sink.js';

const dcm = (name: string): string => path.join(FIXTURES_DIR, 'dicom', name);
// SC_rgb_rle and SC_rgb_small_odd share one study; chrFren is another study.
const RLE = dcm('SC_rgb_rle.dcm');
const ODD = dcm('SC_rgb_small_odd.dcm');
const FREN = dcm('chrFren.dcm');
const STUDY_A = '1.2.826.0.1.3680043.8.498.12406831542731051035295345080039845114';

let work: string;
let tmpDir: string;
let sink: RecordingSink;
let server: TestHttpServer;

beforeEach(async () => {
  work = await mkdtemp(path.join(os.tmpdir(), 'stow-int-'));
  tmpDir = path.join(work, 'tmp');
  await (await import('node:fs/promises')).mkdir(tmpDir);
  sink = new RecordingSink(path.join(work, 'store'));
  server = await startTestServer((app) => {
    app.use(
      '/dicomweb',
      createStowRouter({ sink, tmpDir, limits: { maxPartBytes: 64 * 1024, maxRequestBytes: 1024 * 1024 } }),
    );
    // The gateway's one error handler (app.ts) turns the router's typed errors into statuses.
    app.use(errorHandler());
  });
});
afterEach(async () => {
  await server.close();
  await rm(work, { recursive: true, force: true });
});

async function post(
  parts: OutboundPart[],
  urlPath = '/dicomweb/studies',
  contentType?: string,
): Promise<{ status: number; body: DicomJsonDataset; type: string | null }> {
  const boundary = newBoundary();
  const res = await fetch(`${server.url}${urlPath}`, {
    method: 'POST',
    headers: { 'content-type': contentType ?? multipartRelatedContentType(boundary) },
    body: multipartBody(parts, boundary) as unknown as BodyInit,
    duplex: 'half',
  } as RequestInit);
  const text = await res.text();
  return { status: res.status, body: JSON.parse(text) as DicomJsonDataset, type: res.headers.get('content-type') };
}

const part = (body: string | Uint8Array, contentType = 'application/dicom'): OutboundPart => ({ contentType, body });

describe('STOW-RS router (PS3.18 §10.5) on real express', () => {
  test('[REQ-STOW-01] two valid instances → 200 with two Referenced SOP items and a study Retrieve URL', async () => {
    const r = await post([part(RLE), part(ODD)]);
    expect(r.status).toBe(200);
    expect(r.type).toMatch(/^application\/dicom\+json/);
    const refs = getSequence(r.body, Tag.ReferencedSOPSequence);
    expect(refs).toHaveLength(2);
    expect(getSequence(r.body, Tag.FailedSOPSequence)).toHaveLength(0);
    expect(getString(r.body, Tag.RetrieveURL)).toBe(`${server.url}/dicomweb/studies/${STUDY_A}`);
    const uids = refs.map((i) => getString(i, Tag.ReferencedSOPInstanceUID));
    expect(new Set(uids)).toEqual(new Set(sink.stored.keys()));
    for (const item of refs) {
      expect(getString(item, Tag.ReferencedSOPClassUID)).toBe('1.2.840.10008.5.1.4.1.1.7');
      expect(getString(item, Tag.RetrieveURL)).toContain(`/instances/${getString(item, Tag.ReferencedSOPInstanceUID)}`);
    }
    // The stored bytes are exactly what was sent.
    const stored = sink.stored.get(uids[0] as string);
    expect(Buffer.compare(await readFile(stored?.storedPath as string), await readFile(RLE))).toBe(0);
    expect(sink.received.every((x) => x.ctx.via === 'stow-rs' && x.ctx.remoteAddress !== undefined)).toBe(true);
    expect(await readdir(tmpDir)).toEqual([]);
  });

  test('[REQ-STOW-02] a non-DICOM part among valid ones → 202, Failure Reason 0xC000, valid ones stored', async () => {
    const r = await post([part(RLE), part(Buffer.from('this is not DICOM at all')), part(FREN)]);
    expect(r.status).toBe(202);
    expect(getSequence(r.body, Tag.ReferencedSOPSequence)).toHaveLength(2);
    const failed = getSequence(r.body, Tag.FailedSOPSequence);
    expect(failed).toHaveLength(1);
    expect(getNumber(failed[0] as DicomJsonDataset, Tag.FailureReason)).toBe(FailureReason.CannotUnderstand);
    expect(sink.stored.size).toBe(2);
    // Two studies → no single study Retrieve URL.
    expect(getString(r.body, Tag.RetrieveURL)).toBeUndefined();
    expect(await readdir(tmpDir)).toEqual([]);
  });

  test('[REQ-STOW-03] all parts bad → 409 with one Failed SOP item per part', async () => {
    const r = await post([part(Buffer.from('garbage one')), part(Buffer.alloc(300, 7))]);
    expect(r.status).toBe(409);
    expect(getSequence(r.body, Tag.FailedSOPSequence)).toHaveLength(2);
    expect(getSequence(r.body, Tag.ReferencedSOPSequence)).toHaveLength(0);
    expect(sink.stored.size).toBe(0);
  });

  test('[REQ-STOW-04] truncated instance → Failed SOP item with a Failure Reason', async () => {
    const whole = await readFile(ODD);
    const r = await post([part(whole.subarray(0, Math.floor(whole.length / 2))), part(FREN)]);
    expect(r.status).toBe(202);
    const failed = getSequence(r.body, Tag.FailedSOPSequence);
    expect(failed).toHaveLength(1);
    expect(getNumber(failed[0] as DicomJsonDataset, Tag.FailureReason)).toBe(FailureReason.CannotUnderstand);
  });

  test('[REQ-STOW-05] wrong Content-Type → 415 with a typed error body, nothing stored', async () => {
    const res = await fetch(`${server.url}/dicomweb/studies`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: '{}',
    });
    expect(res.status).toBe(415);
    expect(((await res.json()) as { code: string }).code).toBe('media-type-unsupported');
    const jsonParts = await post(
      [part(Buffer.from('{}'), 'application/dicom+json')],
      '/dicomweb/studies',
      multipartRelatedContentType('x', 'application/dicom+json'),
    );
    expect(jsonParts.status).toBe(415);
    expect(sink.received).toHaveLength(0);
  });

  test('[REQ-STOW-06] study in URL differs from the instance → Failure Reason 0xA900 with the SOP UIDs', async () => {
    const r = await post([part(RLE), part(FREN)], `/dicomweb/studies/${STUDY_A}`);
    expect(r.status).toBe(202);
    const failed = getSequence(r.body, Tag.FailedSOPSequence);
    expect(failed).toHaveLength(1);
    const f = failed[0] as DicomJsonDataset;
    expect(getNumber(f, Tag.FailureReason)).toBe(FailureReason.DataSetDoesNotMatchSopClass);
    expect(getString(f, Tag.ReferencedSOPInstanceUID)).toBe('1.3.6.1.4.1.5962.1.1.0.1.1.1175775772.5720.0');
    expect(getString(r.body, Tag.RetrieveURL)).toBe(`${server.url}/dicomweb/studies/${STUDY_A}`);
    expect(sink.received[0]?.ctx.expectedStudyInstanceUid).toBe(STUDY_A);
  });

  test('[REQ-STOW-07] re-sending an identical instance is a success (duplicate)', async () => {
    expect((await post([part(RLE)])).status).toBe(200);
    const again = await post([part(RLE)]);
    expect(again.status).toBe(200);
    expect(getSequence(again.body, Tag.ReferencedSOPSequence)).toHaveLength(1);
    expect(sink.received.map((x) => x.outcome.status)).toEqual(['stored', 'duplicate']);
  });

  test('[REQ-STOW-08] hand-built body with a CRLF preamble, padded boundary lines and an epilogue → 200', async () => {
    const b = 'b0und';
    const body = Buffer.concat([
      Buffer.from(`\r\npreamble text\r\n--${b} \t\r\nContent-Type: application/dicom\r\n\r\n`),
      await readFile(FREN),
      Buffer.from(`\r\n--${b}--\r\nepilogue`),
    ]);
    const res = await fetch(`${server.url}/dicomweb/studies`, {
      method: 'POST',
      headers: { 'content-type': `multipart/related; type="application/dicom"; boundary=${b}` },
      body,
    });
    expect(res.status).toBe(200);
    expect(sink.stored.size).toBe(1);
  });

  test('[REQ-STOW-09] malformed multipart (no boundary in body) → 400; missing close delimiter → 400', async () => {
    const ct = 'multipart/related; type="application/dicom"; boundary=abc';
    const none = await fetch(`${server.url}/dicomweb/studies`, {
      method: 'POST',
      headers: { 'content-type': ct },
      body: 'no parts here',
    });
    expect(none.status).toBe(400);
    const trunc = await fetch(`${server.url}/dicomweb/studies`, {
      method: 'POST',
      headers: { 'content-type': ct },
      body: Buffer.concat([Buffer.from('--abc\r\n\r\n'), await readFile(FREN)]),
    });
    expect(trunc.status).toBe(400);
    expect(sink.received).toHaveLength(0);
    expect(await readdir(tmpDir)).toEqual([]);
  });

  test('[REQ-STOW-10] a part over maxPartBytes fails alone with 0xA700; the others are stored', async () => {
    const big = Buffer.alloc(100 * 1024, 1);
    const r = await post([part(FREN), part(big)]);
    expect(r.status).toBe(202);
    expect(getNumber(getSequence(r.body, Tag.FailedSOPSequence)[0] as DicomJsonDataset, Tag.FailureReason)).toBe(
      FailureReason.OutOfResources,
    );
    expect(sink.stored.size).toBe(1);
    expect(await readdir(tmpDir)).toEqual([]);
  });

  test('[REQ-STOW-12] refused before or while the body streams (415, 413): the client reads the answer, no reset', async () => {
    // 32 MiB streamed in 256 KiB chunks; the server answers early and reads the rest for a while
    // (lingering close), so the client's writes do not provoke a reset that would hide the answer.
    const chunk = Buffer.alloc(256 * 1024, 0x42);
    const sendBig = (contentType: string): Promise<number> =>
      new Promise((resolve, reject) => {
        const req = http.request(`${server.url}/dicomweb/studies`, {
          method: 'POST',
          headers: { 'content-type': contentType },
          agent: false,
        });
        req.on('response', (res) => {
          res.resume();
          res.on('end', () => resolve(res.statusCode ?? 0));
        });
        req.on('error', reject);
        void (async () => {
          req.write('--big\r\n\r\n');
          for (let i = 0; i < 128 && !req.destroyed; i++) {
            if (!req.write(chunk)) await new Promise<void>((r) => req.once('drain', () => r()));
          }
          if (!req.destroyed) req.end('\r\n--big--');
        })();
      });
    expect(await sendBig('application/octet-stream')).toBe(415);
    // maxRequestBytes is 1 MiB here.
    expect(await sendBig('multipart/related; type="application/dicom"; boundary=big')).toBe(413);
    expect((await post([part(ODD)])).status).toBe(200);
  });

  test('[REQ-STOW-11] client disconnect mid-upload: accepted parts stay stored, no temp files remain, server keeps serving', async () => {
    const b = 'disc0nnect';
    const req = http.request(`${server.url}/dicomweb/studies`, {
      method: 'POST',
      headers: {
        'content-type': `multipart/related; type="application/dicom"; boundary=${b}`,
        'transfer-encoding': 'chunked',
      },
    });
    req.on('error', () => undefined);
    req.write(
      Buffer.concat([
        Buffer.from(`--${b}\r\nContent-Type: application/dicom\r\n\r\n`),
        await readFile(FREN),
        Buffer.from(`\r\n--${b}\r\n\r\n`),
      ]),
    );
    const second = await readFile(RLE);
    req.write(second.subarray(0, 1000));
    // Wait until the first part reached the sink, then drop the connection mid-part.
    for (let i = 0; i < 200 && sink.stored.size === 0; i++) await new Promise((r) => setTimeout(r, 10));
    await new Promise((r) => setTimeout(r, 50));
    req.destroy();
    for (let i = 0; i < 200 && (await readdir(tmpDir)).length > 0; i++) await new Promise((r) => setTimeout(r, 10));
    await new Promise((r) => setTimeout(r, 100));
    expect(sink.stored.size).toBe(1);
    expect(await readdir(tmpDir)).toEqual([]);
    expect((await post([part(ODD)])).status).toBe(200);
  });
});

describe('STOW-RS per local AE (/aets/{AET}/studies, issue 11)', () => {
  test('the called AE reaches the sink; Retrieve URLs name the per-AE WADO-RS service under retrieveUrlBase', async () => {
    const aeServer = await startTestServer((app) => {
      app.use(
        '/dicomweb',
        createStowRouter({
          sink,
          tmpDir,
          localAeTitles: ['CT_AI'],
          retrieveUrlBase: 'https://gw.example/dicomweb/',
        }),
      );
      app.use(errorHandler());
    });
    try {
      const boundary = newBoundary();
      const res = await fetch(`${aeServer.url}/dicomweb/aets/CT_AI/studies/${STUDY_A}`, {
        method: 'POST',
        headers: { 'content-type': multipartRelatedContentType(boundary) },
        body: multipartBody([part(RLE)], boundary) as unknown as BodyInit,
        duplex: 'half',
      } as RequestInit);
      expect(res.status).toBe(200);
      const body = JSON.parse(await res.text()) as DicomJsonDataset;
      expect(getString(body, Tag.RetrieveURL)).toBe(`https://gw.example/dicomweb/aets/CT_AI/studies/${STUDY_A}`);
      const ref = getSequence(body, Tag.ReferencedSOPSequence)[0] as DicomJsonDataset;
      expect(getString(ref, Tag.RetrieveURL)).toMatch(
        new RegExp(
          `^https://gw\\.example/dicomweb/aets/CT_AI/studies/${STUDY_A.replace(/\./g, '\\.')}/series/[0-9.]+/instances/[0-9.]+$`,
        ),
      );
      expect(sink.received.map((r) => r.ctx.calledAeTitle)).toEqual(['CT_AI']);
      // A title the gateway does not have: 404 before the body is read; nothing reaches the sink.
      const unknown = await fetch(`${aeServer.url}/dicomweb/aets/MR_AI/studies`, {
        method: 'POST',
        headers: { 'content-type': multipartRelatedContentType(boundary) },
        body: multipartBody([part(ODD)], boundary) as unknown as BodyInit,
        duplex: 'half',
      } as RequestInit);
      expect(unknown.status).toBe(404);
      expect(sink.received).toHaveLength(1);
    } finally {
      await aeServer.close();
    }
  });
});
