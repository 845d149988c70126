import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { Readable } from 'node:stream';
import { parsePart10 } from '../../../src/dicom/dataset.js';
import { buildEncapsulatedPdf } from '../../../src/dicom/pdf/encapsulated-pdf.js';
import { loadPdfFonts } from '../../../src/dicom/pdf/fonts.js';
import { buildDraftSr, type DraftSr } from '../../../src/dicom/sr/draft-sr.js';
import { ErrorCode } from '../../../src/errors.js';
import {
  classifyStowResult,
  Delivery,
  ExportConflictError,
  StowInstanceStatus,
  StowRsDestination,
} from '../../../src/export/sr-destination.js';
import { compareFingerprints, contentFingerprint } from '../../../src/export/stored-fingerprint.js';
import { FailureReason } from '../../../src/ingest/types.js';
import { type DicomJsonDataset, Tag } from '../../../src/pacs/dicom-json.js';
import { DicomwebClient, parseStowResponse } from '../../../src/pacs/dicomweb-client.js';
import { parseMediaType } from '../../../src/pacs/media-type.js';
import { parseMultipart } from '../../../src/pacs/multipart.js';
import { paramsFor, sibling, sourceHeader } from '../dicom/sr/sr-fixtures.js';

/**
 * [issue 11] STOW-RS export: the per-instance reading of a STOW-RS response, the content fingerprint
 * that decides whether a copy the PACS already holds is ours, and StowRsDestination against a small
 * real HTTP STOW-RS/WADO-RS server that answers as scripted (partial failures, 0x0111, a copy that
 * differs). Orthanc itself is in test/e2e/stow-export-orthanc.e2e.test.ts.
 */

const ct = sourceHeader('CT_small.dcm');
const sources = [ct, sibling(ct, 1)];
const STUDY = String(ct.StudyInstanceUID);
const SR = '2.25.1';
const PDF = '2.25.2';

/** DICOM JSON (PS3.18 Annex F) of our own bytes, as a PACS would return for `/metadata`. */
function metadataOf(part10: Uint8Array): DicomJsonDataset {
  const conv = (ds: Record<string, { vr: string; Value?: unknown[] }>): DicomJsonDataset => {
    const out: Record<string, unknown> = {};
    for (const [tag, a] of Object.entries(ds)) {
      const v = a.Value?.[0];
      if (v instanceof ArrayBuffer) out[tag] = { vr: a.vr, InlineBinary: Buffer.from(v).toString('base64') };
      else if (a.vr === 'SQ')
        out[tag] = { vr: 'SQ', Value: (a.Value ?? []).map((i) => conv(i as Record<string, { vr: string }>)) };
      else out[tag] = a.Value === undefined ? { vr: a.vr } : { vr: a.vr, Value: a.Value };
    }
    return out as DicomJsonDataset;
  };
  return conv(parsePart10(part10).dict);
}

function clone<T>(x: T): T {
  return JSON.parse(JSON.stringify(x)) as T;
}

describe('classifyStowResult (PS3.18 §10.5.3)', () => {
  const res = (httpStatus: number, ds: DicomJsonDataset, warning?: string) => ({
    ...parseStowResponse(httpStatus, ds),
    ...(warning ? { warning } : {}),
  });
  const ref = (uid: string, warning?: number) => ({
    '00081150': { vr: 'UI', Value: ['1.2.840.10008.5.1.4.1.1.88.33'] },
    '00081155': { vr: 'UI', Value: [uid] },
    ...(warning !== undefined ? { '00081196': { vr: 'US', Value: [warning] } } : {}),
  });
  const fail = (uid: string | undefined, reason?: number) => ({
    ...(uid ? { '00081155': { vr: 'UI', Value: [uid] } } : {}),
    ...(reason !== undefined ? { '00081197': { vr: 'US', Value: [reason] } } : {}),
  });
  const sq = (items: object[]) => ({ vr: 'SQ', Value: items });

  it('reads a partly failed multi-instance send per instance: A7xx transient, others permanent', () => {
    const out = classifyStowResult(
      res(202, { [Tag.ReferencedSOPSequence]: sq([ref(SR)]), [Tag.FailedSOPSequence]: sq([fail(PDF, 0xa702)]) }),
      [SR, PDF],
    );
    expect(out.get(SR)?.status).toBe(StowInstanceStatus.Stored);
    expect(out.get(PDF)).toEqual({ status: StowInstanceStatus.Transient, failureReason: 0xa702 });
    const bad = classifyStowResult(res(409, { [Tag.FailedSOPSequence]: sq([fail(PDF, 0xc000)]) }), [SR, PDF]);
    expect(bad.get(PDF)?.status).toBe(StowInstanceStatus.Permanent);
    // Not mentioned at all: only the stored copy can say.
    expect(bad.get(SR)?.status).toBe(StowInstanceStatus.CheckStored);
  });

  it('0x0111, a 409 without a reason, a Warning Reason and an "already stored" Warning header mean: check the copy', () => {
    expect(
      classifyStowResult(res(409, { [Tag.FailedSOPSequence]: sq([fail(SR, FailureReason.DuplicateSopInstance)]) }), [
        SR,
      ]).get(SR),
    ).toEqual({ status: StowInstanceStatus.CheckStored, alreadyStored: true, failureReason: 0x0111 });
    expect(classifyStowResult(res(409, { [Tag.FailedSOPSequence]: sq([fail(SR)]) }), [SR]).get(SR)?.status).toBe(
      StowInstanceStatus.CheckStored,
    );
    // The same no-reason failure outside a 409 is a plain processing failure: permanent.
    expect(classifyStowResult(res(400, { [Tag.FailedSOPSequence]: sq([fail(SR)]) }), [SR]).get(SR)?.status).toBe(
      StowInstanceStatus.Permanent,
    );
    expect(
      classifyStowResult(res(202, { [Tag.ReferencedSOPSequence]: sq([ref(SR, 0xb000)]) }), [SR]).get(SR),
    ).toMatchObject({ status: StowInstanceStatus.CheckStored, warningReason: 0xb000 });
    expect(
      classifyStowResult(
        res(200, { [Tag.ReferencedSOPSequence]: sq([ref(SR)]) }, '299 pacs "Instance already stored"'),
        [SR],
      ).get(SR)?.status,
    ).toBe(StowInstanceStatus.CheckStored);
    // A failed item without a UID is ours only when we sent one instance.
    expect(
      classifyStowResult(res(409, { [Tag.FailedSOPSequence]: sq([fail(undefined, 0xa700)]) }), [SR]).get(SR)?.status,
    ).toBe(StowInstanceStatus.Transient);
  });
});

describe('content fingerprint (stored-fingerprint.ts)', () => {
  const sr = buildDraftSr(paramsFor(sources, ['Kein Ödem; 日本語 😀']));
  const ours = contentFingerprint(parsePart10(sr.part10).dict);

  it('is the same for our bytes and the PACS copy with its own coercions and additions', () => {
    const meta = clone(metadataOf(sr.part10)) as Record<string, { vr: string; Value?: unknown[] }>;
    meta['00100010'] = { vr: 'PN', Value: [{ Alphabetic: 'COERCED^NAME' }] }; // PS3.4 B.4.1.3
    meta['00080050'] = { vr: 'SH', Value: ['ACC-FROM-RIS'] };
    meta['00080056'] = { vr: 'CS', Value: ['ONLINE'] }; // Instance Availability, added
    meta['00091010'] = { vr: 'LO', Value: ['private'] };
    meta['00080033'] = { vr: 'TM', Value: ['235959'] }; // Content Time of a re-run
    meta['00080005'] = { vr: 'CS', Value: ['ISO_IR 192'] };
    // Padding a PACS adds to a UID.
    meta['00080018'] = { vr: 'UI', Value: [`${sr.sopInstanceUid}\0`] };
    const theirs = contentFingerprint(meta);
    expect(theirs.sha256).toBe(ours.sha256);
    expect(compareFingerprints(ours, theirs)).toEqual({ same: true, differences: [] });
    // Covers identity, flags and the finding text.
    const paths = ours.entries.map((e) => e.path);
    expect(paths).toEqual(expect.arrayContaining(['SOPInstanceUID', 'CompletionFlag', 'VerificationFlag']));
    expect(ours.entries.some((e) => e.value === 'Kein Ödem; 日本語 😀')).toBe(true);
  });

  it('differs, at a tag path and without values, for another finding text or another flag', () => {
    const other = buildDraftSr(paramsFor(sources, ['Pleural effusion']));
    expect(other.sopInstanceUid).toBe(sr.sopInstanceUid);
    const cmp = compareFingerprints(ours, contentFingerprint(metadataOf(other.part10)));
    expect(cmp.same).toBe(false);
    expect(cmp.differences).toHaveLength(1);
    expect(cmp.differences[0]).toMatch(/^Content\/[\d/]+:text$/);
    expect(cmp.differences.join()).not.toContain('Pleural');

    const flagged = clone(metadataOf(sr.part10)) as Record<string, { vr: string; Value?: unknown[] }>;
    flagged['0040A493'] = { vr: 'CS', Value: ['VERIFIED'] };
    expect(compareFingerprints(ours, contentFingerprint(flagged)).differences).toEqual(['VerificationFlag']);
  });
});

interface ScriptedPacs {
  readonly baseUrl: string;
  readonly posts: string[][];
  readonly stored: Map<string, Uint8Array>;
  close(): Promise<void>;
}

/**
 * A small STOW-RS + WADO-RS metadata server: stores what it is sent (unless `answer` says the
 * instance failed) and serves its copy's metadata. `answer(post, uid)` scripts each instance.
 */
async function scriptedPacs(
  answer: (post: number, uid: string) => { failureReason?: number } | 'keep-old',
  metadataStatus: () => number = () => 200,
): Promise<ScriptedPacs> {
  const posts: string[][] = [];
  const stored = new Map<string, Uint8Array>();
  const server = http.createServer(async (req, res) => {
    if (req.method === 'POST') {
      const boundary = parseMediaType(req.headers['content-type'] ?? '').params.boundary ?? '';
      const uids: string[] = [];
      const ok: object[] = [];
      const failed: object[] = [];
      const n = posts.length + 1;
      for await (const part of parseMultipart(Readable.from(req), boundary)) {
        const chunks: Buffer[] = [];
        for await (const c of part.body) chunks.push(c as Buffer);
        const bytes = new Uint8Array(Buffer.concat(chunks));
        const ds = parsePart10(bytes).dataset;
        const uid = String(ds.SOPInstanceUID);
        uids.push(uid);
        const a = answer(n, uid);
        const item = {
          '00081150': { vr: 'UI', Value: [String(ds.SOPClassUID)] },
          '00081155': { vr: 'UI', Value: [uid] },
        };
        if (a !== 'keep-old' && a.failureReason !== undefined) {
          failed.push({ ...item, '00081197': { vr: 'US', Value: [a.failureReason] } });
          continue;
        }
        if (a !== 'keep-old' || !stored.has(uid)) stored.set(uid, bytes);
        ok.push(item);
      }
      posts.push(uids);
      const status = failed.length === 0 ? 200 : ok.length === 0 ? 409 : 202;
      res.writeHead(status, { 'content-type': 'application/dicom+json' });
      res.end(
        JSON.stringify({
          ...(ok.length ? { '00081199': { vr: 'SQ', Value: ok } } : {}),
          ...(failed.length ? { '00081198': { vr: 'SQ', Value: failed } } : {}),
        }),
      );
      return;
    }
    const m = /\/instances\/([^/]+)\/metadata$/.exec(req.url ?? '');
    const bytes = m ? stored.get(decodeURIComponent(m[1] as string)) : undefined;
    const status = metadataStatus();
    if (status !== 200 || !bytes) {
      res.writeHead(bytes ? status : 404).end();
      return;
    }
    res.writeHead(200, { 'content-type': 'application/dicom+json' }).end(JSON.stringify([metadataOf(bytes)]));
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  const { port } = server.address() as AddressInfo;
  return {
    baseUrl: `http://127.0.0.1:${port}/dicom-web`,
    posts,
    stored,
    close: () => new Promise<void>((r) => server.close(() => r())),
  };
}

describe('StowRsDestination.sendAll', () => {
  let sr: DraftSr;
  let pdf: Awaited<ReturnType<typeof buildEncapsulatedPdf>>;
  const pacsList: ScriptedPacs[] = [];
  beforeAll(async () => {
    sr = buildDraftSr(paramsFor(sources, ['first text']));
    pdf = await buildEncapsulatedPdf({ sr, fonts: loadPdfFonts() });
  });
  afterAll(async () => {
    for (const p of pacsList) await p.close();
  });
  const start = async (...args: Parameters<typeof scriptedPacs>) => {
    const p = await scriptedPacs(...args);
    pacsList.push(p);
    return p;
  };
  const destination = (p: ScriptedPacs, attempts = 3) =>
    new StowRsDestination('pacs', new DicomwebClient({ baseUrl: p.baseUrl, timeoutMs: 5_000 }), p.baseUrl, {
      attempts,
      backoffBaseMs: 10,
    });
  const objs = () => [
    { studyInstanceUid: STUDY, sopInstanceUid: sr.sopInstanceUid, part10: sr.part10 },
    { studyInstanceUid: STUDY, sopInstanceUid: pdf.sopInstanceUid, part10: pdf.part10 },
  ];

  it('resends only the instance that failed transiently (SR stored, PDF A700 once)', async () => {
    const p = await start((post, uid) => (post === 1 && uid === pdf.sopInstanceUid ? { failureReason: 0xa700 } : {}));
    const out = await destination(p).sendAll(objs());
    expect(out.map((r) => r.ok)).toEqual([true, true]);
    expect(p.posts).toEqual([[sr.sopInstanceUid, pdf.sopInstanceUid], [pdf.sopInstanceUid]]);
    expect(out.map((r) => (r.ok ? r.delivery : r.error.code))).toEqual([Delivery.Stored, Delivery.Stored]);
  });

  it('gives up after the bounded attempts with a retryable code; a permanent refusal is not resent', async () => {
    const p = await start((_post, uid) => (uid === pdf.sopInstanceUid ? { failureReason: 0xa700 } : {}));
    const out = await destination(p, 2).sendAll(objs());
    expect(out.map((r) => (r.ok ? 'ok' : r.error.code))).toEqual(['ok', ErrorCode.PacsUnavailable]);
    expect(p.posts).toHaveLength(2);
    const q = await start((_post, uid) => (uid === pdf.sopInstanceUid ? { failureReason: 0xc000 } : {}));
    const out2 = await destination(q).sendAll(objs());
    expect(out2.map((r) => (r.ok ? 'ok' : r.error.code))).toEqual(['ok', ErrorCode.PacsRejected]);
    expect(q.posts).toHaveLength(1);
  });

  it('0x0111 with our content already there → success, "already present, identical"', async () => {
    const p = await start((post) => (post === 1 ? {} : { failureReason: FailureReason.DuplicateSopInstance }));
    await destination(p).sendAll(objs());
    const again = await destination(p).sendAll(objs());
    expect(again.map((r) => (r.ok ? r.delivery : r.error.code))).toEqual([
      Delivery.AlreadyPresentIdentical,
      Delivery.AlreadyPresentIdentical,
    ]);
  });

  it('0x0111, or a silent success, with other content under our UID → export-conflict (permanent)', async () => {
    const other = buildDraftSr(paramsFor(sources, ['second, different text']));
    expect(other.sopInstanceUid).toBe(sr.sopInstanceUid);
    for (const answer of [
      (post: number) => (post === 1 ? {} : { failureReason: FailureReason.DuplicateSopInstance }),
      // Orthanc's way: "stored", while the first copy is kept.
      () => 'keep-old' as const,
    ]) {
      const p = await start(answer);
      await destination(p).sendAll([
        { studyInstanceUid: STUDY, sopInstanceUid: other.sopInstanceUid, part10: other.part10 },
      ]);
      const [r] = await destination(p).sendAll(objs().slice(0, 1));
      expect(r?.ok).toBe(false);
      const err = (r as { error: unknown }).error;
      expect(err).toBeInstanceOf(ExportConflictError);
      expect((err as ExportConflictError).code).toBe(ErrorCode.ExportConflict);
      expect((err as ExportConflictError).differences[0]).toMatch(/:text$/);
      expect(p.posts).toHaveLength(2);
    }
  });

  it('a stored copy that cannot be read is transient', async () => {
    const p = await start(
      () => ({ failureReason: FailureReason.DuplicateSopInstance }),
      () => 503,
    );
    p.stored.set(sr.sopInstanceUid, sr.part10);
    const [r] = await destination(p, 2).sendAll(objs().slice(0, 1));
    expect(r?.ok ? 'ok' : r?.error.code).toBe(ErrorCode.PacsUnavailable);
    expect(p.posts).toHaveLength(2);
  });
});
