import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Readable } from 'node:stream';
import { promisify } from 'node:util';
import { parsePart10 } from '../../src/dicom/dataset.js';
import { createApiToken } from '../../src/http/auth/api-tokens.js';
import { DicomwebClient } from '../../src/pacs/dicomweb-client.js';
import { parseMediaType } from '../../src/pacs/media-type.js';
import { parseMultipart } from '../../src/pacs/multipart.js';
import { backends, bearer, startTestGateway, type TestGateway, waitFor } from '../support/gateway.js';

/**
 * Issue 11, DICOMweb: STOW-RS on per-AE paths (/dicomweb/aets/{AET}/studies) is received like a
 * C-STORE to that Called AE (same AE titles as the DIMSE listeners, same called AE on the row and
 * the audit event, same routing rule), an unknown AE is a 404 audited as a refusal, and the
 * Retrieve URLs of the STOW-RS answer resolve: WADO-RS serves the stored bytes (sha256 equal, read
 * back by DCMTK dcmdump), negotiates the transfer syntax (406 for one not held), answers 410 for
 * what retention removed and 404 for quarantined instances, and lets only the roles of the route
 * table retrieve.
 */
const run = promisify(execFile);
const J2K = path.join(__dirname, '../fixtures/sample-study/RG3_J2KR.dcm');
const CT = path.join(__dirname, '../fixtures/dicom/CT_small.dcm');
const MR = path.join(__dirname, '../fixtures/dicom/MR_small.dcm');
const uids = (f: string) => {
  const ds = parsePart10(readFileSync(f)).dataset;
  return {
    study: ds.StudyInstanceUID as string,
    series: ds.SeriesInstanceUID as string,
    sop: ds.SOPInstanceUID as string,
  };
};
const j2k = uids(J2K);
const ct = uids(CT);
const mr = uids(MR);
const sha = (b: Uint8Array | string) =>
  createHash('sha256')
    .update(typeof b === 'string' ? readFileSync(b) : b)
    .digest('hex');
const J2K_TS = '1.2.840.10008.1.2.4.90';
const MULTIPART_DICOM = 'multipart/related; type="application/dicom"';

interface Retrieved {
  status: number;
  contentType: string | null;
  parts: { contentType: string; bytes: Buffer }[];
  body?: string;
}

/** GET a WADO-RS URL and split the multipart answer into its parts. */
async function retrieve(url: string, headers: Record<string, string>, accept?: string): Promise<Retrieved> {
  const res = await fetch(url, { headers: { ...headers, ...(accept ? { accept } : {}) } });
  const contentType = res.headers.get('content-type');
  if (res.status !== 200 || !res.body) return { status: res.status, contentType, parts: [], body: await res.text() };
  const boundary = parseMediaType(contentType ?? '').params.boundary as string;
  const parts: Retrieved['parts'] = [];
  for await (const p of parseMultipart(Readable.fromWeb(res.body as never), boundary)) {
    const chunks: Buffer[] = [];
    for await (const c of p.body) chunks.push(c as Buffer);
    parts.push({ contentType: p.headers['content-type'] ?? '', bytes: Buffer.concat(chunks) });
  }
  return { status: res.status, contentType, parts };
}

interface JobRow {
  state: string;
  result: { location: string } | null;
  error_code: string | null;
}

describe.each(backends())('DICOMweb per-AE paths and WADO-RS on %s', (backend) => {
  let t: TestGateway;
  let port: number;
  let ctAi: string;
  let work: string;
  let auditMark = '0';
  beforeAll(async () => {
    work = mkdtempSync(path.join(tmpdir(), 'rs-aets-'));
    t = await startTestGateway(backend, {
      dimse: {
        listeners: [
          { aeTitle: 'CT_AI', port: 0, host: '127.0.0.1' },
          { aeTitle: 'MR_AI', port: 0, host: '127.0.0.1' },
        ],
      },
      destinations: [
        { name: 'outbox', type: 'folder', path: path.join(work, 'outbox') },
        { name: 'ct-ai', type: 'folder', path: path.join(work, 'ct-ai') },
      ],
      defaultDestination: 'outbox',
      routes: [{ name: 'by-called-ae', match: { calledAeTitle: ['CT_AI'] }, destination: 'ct-ai' }],
    });
    port = t.gw.dimseListeners.find((l) => l.aeTitle === 'CT_AI')?.port as number;
    ctAi = (
      await createApiToken(t.gw.db.pool, {
        name: 'ct-ai sender',
        role: 'ingest',
        scopes: ['/dicomweb/aets/CT_AI'],
        createdBy: 'test',
      })
    ).secret;
  });
  afterAll(async () => {
    await t?.close();
    rmSync(work, { recursive: true, force: true });
  });

  async function auditSince(mark: string, kind: string) {
    const { rows } = await t.gw.db.pool.query<{
      outcome: number;
      actor: string | null;
      event_id: string;
      action: string;
      study_instance_uid: string | null;
      sop_instance_uids: string[] | null;
      detail: Record<string, unknown>;
    }>(
      `SELECT outcome, actor, event_id, action_code AS action, study_instance_uid, sop_instance_uids, detail
       FROM audit_events WHERE id > $1 AND kind = $2 ORDER BY id`,
      [mark, kind],
    );
    return rows;
  }
  async function mark(): Promise<string> {
    const { rows } = await t.gw.db.pool.query<{ id: string }>(
      'SELECT COALESCE(max(id), 0)::text AS id FROM audit_events',
    );
    return rows[0]?.id ?? '0';
  }
  async function finishedJob(study: string): Promise<JobRow> {
    return waitFor(
      'describe-study job',
      async () => {
        const r = await t.gw.db.pool.query<JobRow>(
          'SELECT state, result, error_code FROM jobs WHERE study_instance_uid = $1 ORDER BY id DESC LIMIT 1',
          [study],
        );
        const j = r.rows[0];
        return j && (j.state === 'succeeded' || j.state === 'failed') ? j : undefined;
      },
      120_000,
    );
  }

  it('STOW-RS to /dicomweb/aets/CT_AI records the called AE, routes like a C-STORE to CT_AI, and every Retrieve URL gives the same bytes back', async () => {
    auditMark = await mark();
    const client = new DicomwebClient({
      baseUrl: `${t.gw.baseUrl}/dicomweb/aets/CT_AI`,
      timeoutMs: 30_000,
      auth: { type: 'bearer', token: ctAi },
    });
    const stow = await client.storeInstances(undefined, [J2K, CT]);
    expect(stow.httpStatus).toBe(200);
    expect(stow.referenced.map((r) => r.sopInstanceUid)).toEqual([j2k.sop, ct.sop]);
    // The same AE by DIMSE: DCMTK storescu to Called AE CT_AI.
    await run('storescu', ['-aet', 'MODALITY', '-aec', 'CT_AI', '127.0.0.1', String(port), MR], { timeout: 60_000 });

    const rows = await t.gw.db.pool.query<{ sop_instance_uid: string; received_via: string; called_ae_title: string }>(
      'SELECT sop_instance_uid, received_via, called_ae_title FROM instances WHERE sop_instance_uid = ANY($1) ORDER BY sop_instance_uid',
      [[j2k.sop, ct.sop, mr.sop]],
    );
    expect(Object.fromEntries(rows.rows.map((r) => [r.sop_instance_uid, [r.received_via, r.called_ae_title]]))).toEqual(
      {
        [j2k.sop]: ['stow-rs', 'CT_AI'],
        [ct.sop]: ['stow-rs', 'CT_AI'],
        [mr.sop]: ['c-store', 'CT_AI'],
      },
    );
    const received = await auditSince(auditMark, 'instance-received');
    expect(received.map((e) => [e.sop_instance_uids?.[0], e.detail.via, e.detail.calledAeTitle])).toEqual([
      [j2k.sop, 'stow-rs', 'CT_AI'],
      [ct.sop, 'stow-rs', 'CT_AI'],
      [mr.sop, 'c-store', 'CT_AI'],
    ]);

    // Retrieve URLs name the per-AE service, and each resolves to the stored bytes, for the scoped sender.
    const base = `${t.gw.baseUrl}/dicomweb/aets/CT_AI`;
    expect(stow.referenced.map((r) => r.retrieveUrl)).toEqual([
      `${base}/studies/${j2k.study}/series/${j2k.series}/instances/${j2k.sop}`,
      `${base}/studies/${ct.study}/series/${ct.series}/instances/${ct.sop}`,
    ]);
    for (const [r, file] of [
      [stow.referenced[0], J2K],
      [stow.referenced[1], CT],
    ] as const) {
      const got = await retrieve(r?.retrieveUrl as string, bearer(ctAi), `${MULTIPART_DICOM}; transfer-syntax=*`);
      expect(got.status).toBe(200);
      expect(got.contentType).toMatch(/^multipart\/related; type="application\/dicom"; boundary=/);
      expect(got.parts).toHaveLength(1);
      expect(sha(got.parts[0]?.bytes as Buffer)).toBe(sha(file));
    }
    // Study and series level: all held instances of that study/series, same bytes.
    const study = await retrieve(`${base}/studies/${j2k.study}`, bearer(ctAi));
    expect(study.parts.map((p) => sha(p.bytes))).toEqual([sha(J2K)]);
    expect(study.parts[0]?.contentType).toBe(`application/dicom; transfer-syntax=${J2K_TS}`);
    const series = await retrieve(`${base}/studies/${ct.study}/series/${ct.series}`, bearer(ctAi));
    expect(series.parts.map((p) => sha(p.bytes))).toEqual([sha(CT)]);

    // Each retrieve is audited once its last byte went out, so the event may trail the response.
    const retrieved = await waitFor('four instances-retrieved events', async () => {
      const r = await auditSince(auditMark, 'instances-retrieved');
      return r.length >= 4 ? r : undefined;
    });
    expect(retrieved).toHaveLength(4);
    expect(retrieved[0]).toMatchObject({
      outcome: 0,
      event_id: '110104',
      action: 'R',
      study_instance_uid: j2k.study,
      sop_instance_uids: [j2k.sop],
      detail: expect.objectContaining({ level: 'instance', calledAeTitle: 'CT_AI', instances: 1 }),
    });
    expect(retrieved[0]?.actor).toMatch(/^api-token:/);

    // The route on the called AE holds for both protocols: each draft goes to ct-ai, not the outbox.
    for (const s of [j2k.study, ct.study, mr.study]) {
      const job = await finishedJob(s);
      expect({ s, state: job.state, error: job.error_code }).toEqual({ s, state: 'succeeded', error: null });
      expect(job.result?.location.startsWith(path.join(work, 'ct-ai'))).toBe(true);
    }
  });

  it('a retrieved instance reads back with DCMTK dcmdump as the instance that was sent', async () => {
    const got = await retrieve(
      `${t.gw.baseUrl}/dicomweb/studies/${ct.study}/series/${ct.series}/instances/${ct.sop}`,
      t.auth('operator'),
      MULTIPART_DICOM,
    );
    expect(got.status).toBe(200);
    const file = path.join(work, 'retrieved.dcm');
    writeFileSync(file, got.parts[0]?.bytes as Buffer);
    const { stdout } = await run('dcmdump', ['+P', '0008,0018', '+P', '0002,0010', file]);
    expect(stdout).toContain(`[${ct.sop}]`);
    expect(stdout).toContain('=LittleEndianExplicit');
    // dcmjs parses it too, to the same SOP Instance UID.
    const dcmjs = (await import('dcmjs')) as unknown as {
      data: { DicomMessage: { readFile(b: ArrayBuffer): { dict: Record<string, { Value?: unknown[] }> } } };
    };
    const bytes = got.parts[0]?.bytes as Buffer;
    const parsed = dcmjs.data.DicomMessage.readFile(
      bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength) as ArrayBuffer,
    );
    expect(parsed.dict['00080018']?.Value).toEqual([ct.sop]);
  });

  it('Accept negotiation: transfer-syntax=* and the stored UID are served, any other syntax is 406', async () => {
    const url = `${t.gw.baseUrl}/dicomweb/studies/${j2k.study}/series/${j2k.series}/instances/${j2k.sop}`;
    const op = t.auth('operator');
    const cases: [string | undefined, number][] = [
      [undefined, 200],
      ['*/*', 200],
      [`${MULTIPART_DICOM}; transfer-syntax=*`, 200],
      [`${MULTIPART_DICOM}; transfer-syntax=${J2K_TS}`, 200],
      // No transfer-syntax: the PS3.18 default, Explicit VR Little Endian, which we do not hold it in.
      [MULTIPART_DICOM, 406],
      [`${MULTIPART_DICOM}; transfer-syntax=1.2.840.10008.1.2`, 406],
      ['application/dicom+json', 406],
      [`${MULTIPART_DICOM}; transfer-syntax=1.2.840.10008.1.2, ${MULTIPART_DICOM}; transfer-syntax=${J2K_TS}`, 200],
      [`${MULTIPART_DICOM}; transfer-syntax=*; q=0`, 406],
    ];
    for (const [accept, status] of cases) {
      const got = await retrieve(url, op, accept);
      expect({ accept, status: got.status }).toEqual({ accept, status });
      if (status === 200) expect(sha(got.parts[0]?.bytes as Buffer)).toBe(sha(J2K));
      else expect(JSON.parse(got.body ?? '{}')).toMatchObject({ code: 'not-acceptable' });
    }
  });

  it('an unknown or invalid AE title: 404 / 400, audited as a refusal; nothing stored', async () => {
    const m = await mark();
    const count = async () =>
      (await t.gw.db.pool.query<{ n: number }>('SELECT count(*)::int AS n FROM instances')).rows[0]?.n;
    const before = await count();
    const body = readFileSync(CT);
    const post = (aet: string) =>
      fetch(`${t.gw.baseUrl}/dicomweb/aets/${aet}/studies`, {
        method: 'POST',
        headers: { ...t.auth('ingest'), 'content-type': `${MULTIPART_DICOM}; boundary=xyz` },
        body: Buffer.concat([
          Buffer.from('--xyz\r\nContent-Type: application/dicom\r\n\r\n'),
          body,
          Buffer.from('\r\n--xyz--\r\n'),
        ]),
      });
    const unknown = await post('NO_SUCH_AE');
    expect(unknown.status).toBe(404);
    expect(await unknown.json()).toEqual({ code: 'not-found', message: 'no such local AE title on this gateway' });
    const invalid = await post('A'.repeat(17));
    expect(invalid.status).toBe(400);
    expect(await count()).toBe(before);
    const refused = await auditSince(m, 'instance-refused');
    expect(refused.map((e) => [e.outcome, e.detail.via, e.detail.errorCode, e.detail.httpStatus])).toEqual([
      [8, 'stow-rs', 'not-found', 404],
      [8, 'stow-rs', 'request-invalid', 400],
    ]);
    // WADO-RS under an unknown AE is 404 as well; under another local AE, CT_AI's instances are not there.
    const op = t.auth('operator');
    expect((await retrieve(`${t.gw.baseUrl}/dicomweb/aets/NO_SUCH_AE/studies/${ct.study}`, op)).status).toBe(404);
    expect((await retrieve(`${t.gw.baseUrl}/dicomweb/aets/MR_AI/studies/${ct.study}`, op)).status).toBe(404);
    expect((await retrieve(`${t.gw.baseUrl}/dicomweb/aets/CT_AI/studies/${ct.study}`, op)).status).toBe(200);
    expect((await retrieve(`${t.gw.baseUrl}/dicomweb/studies/1.2.3.4.5.6.7.8.9`, op)).status).toBe(404);
    expect((await retrieve(`${t.gw.baseUrl}/dicomweb/studies/not-a-uid`, op)).status).toBe(400);
  });

  it('retrieve roles: operator and scoped ingest only; the scope holds across AE paths', async () => {
    const inst = `/studies/${ct.study}/series/${ct.series}/instances/${ct.sop}`;
    const m = await mark();
    const status = async (p: string, h: Record<string, string>) => (await retrieve(`${t.gw.baseUrl}${p}`, h)).status;
    expect(await status(`/dicomweb${inst}`, t.auth('operator'))).toBe(200);
    expect(await status(`/dicomweb${inst}`, t.auth('admin'))).toBe(403);
    expect(await status(`/dicomweb${inst}`, t.auth('auditor'))).toBe(403);
    // An ingest token without scopes may store anywhere but read nothing back.
    const unscoped = await fetch(`${t.gw.baseUrl}/dicomweb${inst}`, { headers: t.auth('ingest') });
    expect(unscoped.status).toBe(403);
    expect(((await unscoped.json()) as { message: string }).message).toBe(
      'role ingest may WADO-RS retrieve an instance only with a token scoped to paths',
    );
    // The CT_AI sender reads under its AE path only.
    expect(await status(`/dicomweb/aets/CT_AI${inst}`, bearer(ctAi))).toBe(200);
    expect(await status(`/dicomweb${inst}`, bearer(ctAi))).toBe(403);
    expect(await status(`/dicomweb/aets/MR_AI${inst}`, bearer(ctAi))).toBe(403);
    const refused = await auditSince(m, 'access-refused');
    expect(refused.map((e) => [e.detail.role, e.detail.reason])).toEqual([
      ['admin', 'role'],
      ['auditor', 'role'],
      ['ingest', 'scope'],
      ['ingest', 'scope'],
      ['ingest', 'scope'],
    ]);
  });

  it('removed by retention: 410 Gone; quarantined: 404; a study keeps serving what it still holds', async () => {
    const pool = t.gw.db.pool;
    const op = t.auth('operator');
    const ctUrl = `${t.gw.baseUrl}/dicomweb/studies/${ct.study}/series/${ct.series}/instances/${ct.sop}`;
    await pool.query('UPDATE instances SET deleted_at = now() WHERE sop_instance_uid = $1', [ct.sop]);
    const gone = await retrieve(ctUrl, op);
    expect(gone.status).toBe(410);
    expect(JSON.parse(gone.body ?? '{}')).toMatchObject({ code: 'gone' });
    expect((await retrieve(`${t.gw.baseUrl}/dicomweb/studies/${ct.study}`, op)).status).toBe(410);
    await pool.query(
      "UPDATE instances SET quarantined_at = now(), quarantine_reason = 'timed-out' WHERE sop_instance_uid = $1",
      [j2k.sop],
    );
    expect((await retrieve(`${t.gw.baseUrl}/dicomweb/studies/${j2k.study}`, op)).status).toBe(404);
    // The MR study is untouched.
    const mrStudy = await retrieve(`${t.gw.baseUrl}/dicomweb/aets/CT_AI/studies/${mr.study}`, op);
    expect(mrStudy.status).toBe(200);
    expect(mrStudy.parts).toHaveLength(1);
  });
});
