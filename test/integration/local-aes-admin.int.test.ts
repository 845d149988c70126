import { execFile, spawn } from 'node:child_process';
import { copyFileSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { freePort } from '../../bench/support/free-port.js';
import { AeConfigStore, ConfigEntity } from '../../src/config/ae-store.js';
import { backends, startTestGateway, type TestGateway, waitFor } from '../support/gateway.js';

/**
 * [REQ-AE-01..08] (issue 11 "Application entities and remote nodes", issue 13 admin API) Local AEs
 * and remote nodes live in PostgreSQL (migration 0022), are changed through /api/v1 while the
 * gateway runs, and the running DIMSE listener follows: DCMTK echoscu/storescu as the peers. Every
 * change is audited (config-change, who, before/after without secrets) in the row's transaction.
 */
jest.setTimeout(180_000);

const run = promisify(execFile);
const CT = path.join(__dirname, '../fixtures/dicom/CT_small.dcm');
const CT_IMAGE_STORAGE = '1.2.840.10008.5.1.4.1.1.2';
const MR_IMAGE_STORAGE = '1.2.840.10008.5.1.4.1.1.4';
const AET = 'RS_AI';

async function dcmtk(cmd: string, args: string[]): Promise<{ code: number; out: string }> {
  try {
    const { stdout, stderr } = await run(cmd, args, { timeout: 120_000 });
    return { code: 0, out: stdout + stderr };
  } catch (err: unknown) {
    const e = err as { code?: number; stdout?: string; stderr?: string };
    return { code: typeof e.code === 'number' ? e.code : -1, out: `${e.stdout ?? ''}${e.stderr ?? ''}` };
  }
}

interface AuditRow {
  id: string;
  actor: string;
  source: string | null;
  detail: Record<string, unknown>;
}

describe.each(backends())('local AEs and remote nodes, live, on %s', (backend) => {
  let t: TestGateway;
  let work: string;
  let base: string;
  let port: number;
  const admin = (): Record<string, string> => ({ ...t.auth('admin'), 'content-type': 'application/json' });
  const url = (p: string): string => `${t.gw.baseUrl}/api/v1${p}`;

  beforeAll(async () => {
    work = mkdtempSync(path.join(tmpdir(), 'rs-aes-'));
    t = await startTestGateway(backend, {
      // No describe jobs while the tests send: the listener is what is under test.
      ingest: { stabilityWindowMs: 600_000 },
      dimse: {
        listeners: [{ aeTitle: AET, port: 0, host: '127.0.0.1', allowedCallingAeTitles: ['MODALITY1'] }],
      },
      remoteNodes: [{ name: 'pacs', baseUrl: 'http://127.0.0.1:9/dicom-web' }],
    });
    base = t.gw.baseUrl;
    port = t.gw.dimseListeners[0]?.port as number;
  });
  afterAll(async () => {
    await t?.close();
    rmSync(work, { recursive: true, force: true });
  });

  async function auditSince(id: string, kind = 'config-change'): Promise<AuditRow[]> {
    const { rows } = await t.gw.db.pool.query<AuditRow>(
      'SELECT id::text AS id, actor, source, detail FROM audit_events WHERE kind = $1 AND id > $2 ORDER BY id',
      [kind, id],
    );
    return rows;
  }
  async function lastAuditId(): Promise<string> {
    const { rows } = await t.gw.db.pool.query<{ id: string }>(
      'SELECT COALESCE(max(id), 0)::text AS id FROM audit_events',
    );
    return rows[0]?.id ?? '0';
  }
  async function getAe(aet = AET): Promise<{ etag: string; body: { definition: Record<string, unknown> } }> {
    const r = await fetch(url(`/local-aes/${aet}`), { headers: admin() });
    expect(r.status).toBe(200);
    return { etag: r.headers.get('etag') as string, body: (await r.json()) as { definition: Record<string, unknown> } };
  }
  async function putAe(def: Record<string, unknown>, etag: string): Promise<Response> {
    return fetch(url(`/local-aes/${def.aeTitle as string}`), {
      method: 'PUT',
      headers: { ...admin(), 'if-match': etag },
      body: JSON.stringify(def),
    });
  }
  const echo = (aet: string, p = port) => dcmtk('echoscu', ['-aet', aet, '-aec', AET, '127.0.0.1', String(p)]);

  it('[REQ-AE-01] the file seeds the tables (source config, audited as config-file); GET has an ETag', async () => {
    const r = await fetch(url('/local-aes'), { headers: admin() });
    expect(r.status).toBe(200);
    const list = (await r.json()) as { items: { key: string; source: string; revision: number }[] };
    expect(list.items).toEqual([expect.objectContaining({ key: AET, source: 'config', revision: 1 })]);
    const seeded = await t.gw.db.pool.query<{ actor: string; detail: { entity: string; operation: string } }>(
      `SELECT actor, detail FROM audit_events WHERE kind = 'config-change' AND detail->>'entity' IS NOT NULL ORDER BY id`,
    );
    expect(seeded.rows.map((x) => [x.actor, x.detail.entity, x.detail.operation])).toEqual([
      ['config-file', 'local-ae', 'create'],
      ['config-file', 'remote-node', 'create'],
    ]);
    const one = await getAe();
    expect(one.etag).toBe('"1"');
    expect(one.body.definition).toMatchObject({ aeTitle: AET, allowedCallingAeTitles: ['MODALITY1'] });
  });

  it('[REQ-AE-02] an unknown calling AE is rejected with PS3.8 1/1/3, DCMTK says so, and it is audited', async () => {
    const before = await lastAuditId();
    expect((await echo('MODALITY1')).code).toBe(0);
    const r = await echo('INTRUDER');
    expect(r.code).not.toBe(0);
    expect(r.out).toMatch(/Calling AE Title Not Recognized/i);
    const ev = await auditSince(before, 'association-rejected');
    expect(ev).toHaveLength(1);
    expect(ev[0]).toMatchObject({
      actor: 'INTRUDER',
      detail: expect.objectContaining({ localAeTitle: AET, result: 1, source: 1, reason: 3 }),
    });
  });

  it('[REQ-AE-03] validation reports every problem at once as RFC 9457 problem details', async () => {
    const r = await fetch(url('/local-aes'), {
      method: 'POST',
      headers: admin(),
      body: JSON.stringify({
        aeTitle: 'THIS_TITLE_IS_TOO_LONG',
        port: 70000,
        allowedHosts: ['not-an-ip', '10.0.0.0/33'],
        allowedSopClasses: ['1.02.3'],
        allowedCallingAeTitles: ['BAD\\AE'],
        colour: 'blue',
      }),
    });
    expect(r.status).toBe(400);
    expect(r.headers.get('content-type')).toMatch(/^application\/problem\+json/);
    const p = (await r.json()) as { type: string; status: number; errors: { pointer: string; detail: string }[] };
    expect(p).toMatchObject({ status: 400, type: 'urn:radscribe:problem:request-invalid' });
    expect(p.errors.map((e) => e.pointer).sort()).toEqual(
      [
        '/aeTitle',
        '/allowedCallingAeTitles/0',
        '/allowedHosts/0',
        '/allowedHosts/1',
        '/allowedSopClasses/0',
        '/colour',
        '/port',
      ].sort(),
    );
    expect(p.errors.find((e) => e.pointer === '/colour')?.detail).toMatch(/unknown key/);
    // Nothing was stored.
    const { rows } = await t.gw.db.pool.query('SELECT 1 FROM local_aes WHERE ae_title = $1', [
      'THIS_TITLE_IS_TOO_LONG',
    ]);
    expect(rows).toEqual([]);
  });

  it('[REQ-AE-04] PUT needs If-Match (428), a stale one is 412; the change and its audit commit together', async () => {
    const { etag, body } = await getAe();
    const def = { ...body.definition, allowedCallingAeTitles: ['MODALITY1', 'MODALITY2'] };
    const none = await fetch(url(`/local-aes/${AET}`), { method: 'PUT', headers: admin(), body: JSON.stringify(def) });
    expect(none.status).toBe(428);
    expect(none.headers.get('content-type')).toMatch(/problem\+json/);
    const stale = await putAe(def, '"999"');
    expect(stale.status).toBe(412);
    expect(stale.headers.get('etag')).toBe(etag);

    const before = await lastAuditId();
    const ok = await putAe(def, etag);
    expect(ok.status).toBe(200);
    const out = (await ok.json()) as { revision: number; source: string; applied: { updated: string[] } };
    expect(out).toMatchObject({ source: 'api', applied: expect.objectContaining({ updated: [AET] }) });
    expect(ok.headers.get('etag')).toBe(`"${out.revision}"`);
    const ev = await auditSince(before);
    expect(ev).toHaveLength(1);
    expect(ev[0]?.actor).toMatch(/^api-token:\d+$/);
    expect(ev[0]?.source).toMatch(/127\.0\.0\.1$/);
    expect(ev[0]?.detail).toMatchObject({
      entity: 'local-ae',
      key: AET,
      operation: 'update',
      revision: out.revision,
      before: expect.objectContaining({ allowedCallingAeTitles: ['MODALITY1'] }),
      after: expect.objectContaining({ allowedCallingAeTitles: ['MODALITY1', 'MODALITY2'] }),
    });
    // The same etag again is now stale: the first writer won.
    expect((await putAe(def, etag)).status).toBe(412);
    // Applied without a restart: MODALITY2 may associate now.
    expect((await echo('MODALITY2')).code).toBe(0);
  });

  it('[REQ-AE-05] allowed calling AEs changed through the API: the next storescu is refused, then accepted', async () => {
    const send = (aet: string) => dcmtk('storescu', ['-aet', aet, '-aec', AET, '127.0.0.1', String(port), CT]);
    expect((await send('MODALITY2')).code).toBe(0);
    let { etag, body } = await getAe();
    expect((await putAe({ ...body.definition, allowedCallingAeTitles: ['MODALITY1'] }, etag)).status).toBe(200);
    const refused = await send('MODALITY2');
    expect(refused.code).not.toBe(0);
    expect(refused.out).toMatch(/Calling AE Title Not Recognized/i);
    ({ etag, body } = await getAe());
    expect((await putAe({ ...body.definition, allowedCallingAeTitles: ['MODALITY1', 'MODALITY2'] }, etag)).status).toBe(
      200,
    );
    expect((await send('MODALITY2')).code).toBe(0);
  });

  it('[REQ-AE-06] a SOP class the AE does not take: its presentation context is rejected, DCMTK reports it', async () => {
    const { etag, body } = await getAe();
    expect((await putAe({ ...body.definition, allowedSopClasses: [MR_IMAGE_STORAGE] }, etag)).status).toBe(200);
    const r = await dcmtk('storescu', ['-aet', 'MODALITY1', '-aec', AET, '127.0.0.1', String(port), CT]);
    expect(r.code).not.toBe(0);
    expect(r.out).toMatch(
      new RegExp(
        `No presentation context for.*${CT_IMAGE_STORAGE.replace(/\./g, '\\.')}|No acceptable Presentation Contexts`,
        'i',
      ),
    );
    // Verification is always accepted.
    expect((await echo('MODALITY1')).code).toBe(0);
    const again = await getAe();
    const { allowedSopClasses: _drop, ...rest } = again.body.definition;
    expect((await putAe(rest, again.etag)).status).toBe(200);
  });

  it('[REQ-AE-07] a host not allowed is rejected (1/1/1) and audited with the reason', async () => {
    let { etag, body } = await getAe();
    expect((await putAe({ ...body.definition, allowedHosts: ['10.9.9.0/24'] }, etag)).status).toBe(200);
    const before = await lastAuditId();
    const r = await echo('MODALITY1');
    expect(r.code).not.toBe(0);
    expect(r.out).toMatch(/Rejected Permanent/i);
    const ev = await auditSince(before, 'association-rejected');
    expect(ev[0]?.detail).toMatchObject({ reason: 1, reasonText: 'calling host not allowed' });
    ({ etag, body } = await getAe());
    expect((await putAe({ ...body.definition, allowedHosts: ['127.0.0.0/8', '::1'] }, etag)).status).toBe(200);
    expect((await echo('MODALITY1')).code).toBe(0);
  });

  it('[REQ-AE-08] a port change while a long storescu transfer runs: the transfer completes, the port rebinds', async () => {
    const n = 150;
    const dir = path.join(work, 'many');
    mkdirSync(dir);
    const files = Array.from({ length: n }, (_, i) => path.join(dir, `ct${i}.dcm`));
    for (const f of files) copyFileSync(CT, f);
    // New SOP Instance UIDs, so each file is its own instance.
    const m = await dcmtk('dcmodify', ['-nb', '-gin', ...files]);
    expect(m.code).toBe(0);
    const count = async (): Promise<number> =>
      Number(
        (await t.gw.db.pool.query<{ n: string }>(`SELECT count(*)::text AS n FROM instances WHERE actor = 'MODALITY1'`))
          .rows[0]?.n,
      );
    const start = await count();
    const child = spawn('storescu', ['-aet', 'MODALITY1', '-aec', AET, '127.0.0.1', String(port), ...files]);
    let out = '';
    child.stdout.on('data', (b: Buffer) => (out += b.toString()));
    child.stderr.on('data', (b: Buffer) => (out += b.toString()));
    const exited = new Promise<number>((resolve) => child.on('exit', (c) => resolve(c ?? -1)));
    await waitFor('first instances of the transfer', async () => ((await count()) > start ? true : undefined), 60_000);

    const newPort = await freePort();
    const { etag, body } = await getAe();
    const r = await putAe({ ...body.definition, port: newPort, allowedCallingAeTitles: ['MODALITY2'] }, etag);
    expect(r.status).toBe(200);
    expect(((await r.json()) as { applied: { rebound: string[] } }).applied.rebound).toEqual([AET]);
    // The change landed while the transfer ran: the old listener is retired, not closed.
    const midway = await count();
    expect(midway - start).toBeLessThan(n);
    expect(t.gw.localAes.registry.retiring).toBe(1);

    expect(await exited).toBe(0);
    expect(out).not.toMatch(/E: /);
    expect((await count()) - start).toBe(n);
    await waitFor('old listener gone', async () => (t.gw.localAes.registry.retiring === 0 ? true : undefined), 10_000);
    // Old port: nothing listens. New port: the new policy (MODALITY1 no longer allowed).
    const refusedConnect = await new Promise<boolean>((resolve) => {
      const s = net.connect(port, '127.0.0.1');
      s.once('connect', () => {
        s.destroy();
        resolve(false);
      });
      s.once('error', () => resolve(true));
    });
    expect(refusedConnect).toBe(true);
    expect(t.gw.dimseListeners).toEqual([{ aeTitle: AET, port: newPort }]);
    expect((await echo('MODALITY1', newPort)).code).not.toBe(0);
    expect((await echo('MODALITY2', newPort)).code).toBe(0);
    port = newPort;
  });

  it('[REQ-AE-09] a change made by another process reaches this one by the generation poll', async () => {
    // Another gateway process on the same database: its own store, not this process's API.
    const other = new AeConfigStore(t.gw.db.pool);
    const cur = await other.get(ConfigEntity.LocalAe, AET);
    if (!cur) throw new Error('no row');
    await other.replace(
      ConfigEntity.LocalAe,
      AET,
      { ...cur.definition, allowedCallingAeTitles: ['MODALITY3'] },
      cur.revision,
      { actor: 'other-process', via: 'cli' },
    );
    await waitFor(
      'the poll to apply the change',
      async () => ((await echo('MODALITY3')).code === 0 ? true : undefined),
      15_000,
    );
    expect((await echo('MODALITY2')).code).not.toBe(0);
  });

  it('[REQ-AE-10] remote nodes: secrets never reach the audit trail; a file-declared node cannot be deleted', async () => {
    const before = await lastAuditId();
    const post = await fetch(url('/remote-nodes'), {
      method: 'POST',
      headers: admin(),
      body: JSON.stringify({
        name: 'archive',
        baseUrl: 'https://svc:s3cr3t-pw@archive.example/dicom-web',
        auth: { type: 'bearer', tokenEnv: 'ARCHIVE_TOKEN' },
      }),
    });
    expect(post.status).toBe(201);
    expect(post.headers.get('location')).toBe('/api/v1/remote-nodes/archive');
    const shown = JSON.stringify(await post.json());
    expect(shown).not.toContain('s3cr3t-pw');
    const ev = await auditSince(before);
    expect(ev).toHaveLength(1);
    expect(JSON.stringify(ev[0]?.detail)).not.toContain('s3cr3t-pw');
    expect(ev[0]?.detail).toMatchObject({
      entity: 'remote-node',
      operation: 'create',
      after: expect.objectContaining({ baseUrl: 'https://svc:***@archive.example/dicom-web' }),
    });
    // The row holds the definition as given (the secret is needed to call the node).
    const row = await t.gw.db.pool.query<{ definition: { baseUrl: string } }>(
      'SELECT definition FROM remote_nodes WHERE name = $1',
      ['archive'],
    );
    expect(row.rows[0]?.definition.baseUrl).toContain('s3cr3t-pw');

    const g = await fetch(url('/remote-nodes/pacs'), { headers: admin() });
    const del = await fetch(url('/remote-nodes/pacs'), {
      method: 'DELETE',
      headers: { ...admin(), 'if-match': g.headers.get('etag') as string },
    });
    expect(del.status).toBe(409);
    const ga = await fetch(url('/remote-nodes/archive'), { headers: admin() });
    const delA = await fetch(url('/remote-nodes/archive'), {
      method: 'DELETE',
      headers: { ...admin(), 'if-match': ga.headers.get('etag') as string },
    });
    expect(delA.status).toBe(204);
    expect((await fetch(url('/remote-nodes/archive'), { headers: admin() })).status).toBe(404);
  });

  it('[REQ-AE-11] an API change survives a restart: the file does not overwrite it', async () => {
    const before = await getAe();
    await t.restart();
    base = t.gw.baseUrl;
    const after = await getAe();
    expect(after.etag).toBe(before.etag);
    expect(after.body).toMatchObject({ source: 'api', definition: before.body.definition });
    expect(t.gw.dimseListeners[0]?.port).toBe(port);
    expect(base).toMatch(/^http/);
  });
});
