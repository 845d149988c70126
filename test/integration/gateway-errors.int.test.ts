import { backends, startTestGateway, type TestGateway } from '../support/gateway.js';

/**
 * [REQ-ERR-01] (issue 8) One place turns errors into statuses: the app's error handler answers
 * `{ code, message }` with the status of the code; a bad query parameter is a 400 that names it; a
 * database failure under an endpoint never shows the client SQL text or a server path.
 */
describe.each(backends())('gateway errors on %s', (backend) => {
  let t: TestGateway;
  beforeAll(async () => {
    t = await startTestGateway(backend);
  });
  afterAll(() => t?.close());

  async function get(
    urlPath: string,
  ): Promise<{ status: number; text: string; body: { code: string; message: string } }> {
    const res = await fetch(`${t.gw.baseUrl}${urlPath}`, { headers: t.auth('auditor') });
    const text = await res.text();
    return { status: res.status, text, body: JSON.parse(text) as { code: string; message: string } };
  }

  it('[REQ-ERR-01] bad query parameters are a 400 that names the parameter', async () => {
    for (const [query, name] of [
      ['since=yesterday', 'since'],
      ['until=', 'until'],
      ['limit=ten', 'limit'],
      ['limit=0', 'limit'],
      ['kind=everything', 'kind'],
      ['study=1&study=2', 'study'],
    ] as const) {
      const r = await get(`/api/audit?${query}`);
      expect({ query, status: r.status, code: r.body.code }).toEqual({ query, status: 400, code: 'request-invalid' });
      expect(r.body.message).toContain(`query parameter ${name}`);
    }
    const ok = await get('/api/audit?limit=5&kind=application-start');
    expect(ok.status).toBe(200);
    expect(Array.isArray(ok.body)).toBe(true);
  });

  it('[REQ-ERR-01] unknown paths and wrong media types get the typed body', async () => {
    expect((await get('/no/such/thing')).body).toEqual({ code: 'not-found', message: 'no such resource' });
    const res = await fetch(`${t.gw.baseUrl}/dicomweb/studies`, {
      method: 'POST',
      headers: { ...t.auth('ingest'), 'content-type': 'application/json' },
      body: '{}',
    });
    expect(res.status).toBe(415);
    expect(((await res.json()) as { code: string }).code).toBe('media-type-unsupported');
  });

  it('[REQ-ERR-02] a database error under an endpoint shows no SQL and no path', async () => {
    const pool = t.gw.db.pool;
    // The audit query's own audit record fails with a message full of internals, as a broken
    // database would (a relation, a file under the data directory, the statement).
    const leak = `could not read file "${t.dataDir}/pglite/base/1/2619" during INSERT INTO audit_events SELECT 1`;
    const install = (errcode: string) =>
      pool.query(`
        CREATE OR REPLACE FUNCTION break_audit_query() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
          IF NEW.kind = 'audit-query' THEN RAISE EXCEPTION '${leak.replace(/'/g, "''")}' USING ERRCODE = '${errcode}'; END IF;
          RETURN NEW;
        END $$;
        DROP TRIGGER IF EXISTS break_audit_query ON audit_events;
        CREATE TRIGGER break_audit_query BEFORE INSERT ON audit_events
          FOR EACH ROW EXECUTE FUNCTION break_audit_query();`);
    try {
      await install('XX001'); // data_corrupted: not a code we classify → internal
      const internal = await get('/api/audit');
      expect(internal.status).toBe(500);
      expect(internal.body).toEqual({ code: 'internal', message: 'internal error' });

      await install('57P01'); // admin_shutdown → database-unavailable (the old handler echoed its text)
      const unavailable = await get('/api/audit?limit=3');
      expect(unavailable.status).toBe(503);
      expect(unavailable.body.code).toBe('database-unavailable');

      for (const r of [internal, unavailable]) {
        for (const secret of [t.dataDir, 'pglite', 'INSERT', 'SELECT', 'audit_events', '2619'])
          expect(r.text).not.toContain(secret);
      }
    } finally {
      await pool.query(`DROP TRIGGER IF EXISTS break_audit_query ON audit_events`);
      await pool.query(`DROP FUNCTION IF EXISTS break_audit_query()`);
    }
    expect((await get('/api/audit?limit=1')).status).toBe(200);
  });
});
