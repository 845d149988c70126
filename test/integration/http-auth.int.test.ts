import { createApiToken, revokeApiToken } from '../../src/http/auth/api-tokens.js';
import { ROLES, type Role } from '../../src/http/auth/roles.js';
import { policyFor, ROUTE_POLICY, type RoutePolicy } from '../../src/http/auth/route-policy.js';
import { backends, bearer, startTestGateway, type TestGateway } from '../support/gateway.js';

/**
 * Issue 12, Access: every HTTP endpoint but /health asks for a bearer token, and each role can do
 * exactly its part. One test per role × route of the route table (src/http/auth/route-policy.ts)
 * on a real gateway (express on port 0, PGlite and PostgreSQL): an allowed role is neither 401 nor
 * 403, a refused one is 403 with an `access-refused` audit event naming the token, the route and
 * the caller's address. Missing, malformed, unknown, expired and revoked tokens are 401 with
 * `WWW-Authenticate: Bearer`, each audited as `user-authentication` outcome 4; no secret is ever
 * written to the audit trail.
 */
interface AuditRow {
  id: string;
  kind: string;
  outcome: number;
  actor: string | null;
  source: string | null;
  event_id: string;
  detail: Record<string, unknown>;
}

const STUDY = '1.2.826.0.1.3680043.8.498.1';

/** A concrete path for a route pattern. */
function concrete(p: RoutePolicy): string {
  return p.path
    .replace(':aet', 'NO_SUCH_AE')
    .replace(':study', STUDY)
    .replace(':series', `${STUDY}.2`)
    .replace(':instance', `${STUDY}.3`)
    .replace(':id', '999999')
    .replace(':name', 'no-such-node');
}

describe.each(backends())('HTTP access control on %s', (backend) => {
  let t: TestGateway;
  const tokenIds = new Map<Role, string>();

  beforeAll(async () => {
    // One unauthenticated request per guarded route (the 401 test) is more failed authentications
    // than the default per-address budget; the throttle has its own tests (http-limits).
    t = await startTestGateway(backend, {
      http: { host: '127.0.0.1', port: 0, limits: { authFailuresPerMinute: 1000 } },
    });
    const { rows } = await t.gw.db.pool.query<{ id: string; role: Role }>(
      "SELECT id::text AS id, role FROM api_tokens WHERE name LIKE 'test %'",
    );
    for (const r of rows) tokenIds.set(r.role, r.id);
  });
  afterAll(() => t?.close());

  async function auditAfter(id: string): Promise<AuditRow[]> {
    const { rows } = await t.gw.db.pool.query<AuditRow>(
      'SELECT id::text AS id, kind, outcome, actor, source, event_id, detail FROM audit_events WHERE id > $1 ORDER BY id',
      [id],
    );
    return rows;
  }
  async function lastAuditId(): Promise<string> {
    const { rows } = await t.gw.db.pool.query<{ id: string }>(
      'SELECT COALESCE(max(id), 0)::text AS id FROM audit_events',
    );
    return rows[0]?.id ?? '0';
  }

  /** A request of the route that is valid enough to get past access control. */
  async function call(p: RoutePolicy, headers: Record<string, string>): Promise<Response> {
    const url = `${t.gw.baseUrl}${concrete(p)}`;
    if (p.method === 'POST' && p.path.startsWith('/dicomweb'))
      // Not DICOM: an allowed caller gets the router's 415, a refused one 403 before the body is read.
      return fetch(url, { method: 'POST', headers: { ...headers, 'content-type': 'application/json' }, body: '{}' });
    if (p.method === 'POST')
      return fetch(url, {
        method: 'POST',
        headers: { ...headers, 'content-type': 'application/json' },
        body: JSON.stringify({ name: 'made by test', role: 'ingest', expires: '1d' }),
      });
    return fetch(url, { method: p.method, headers });
  }

  const guarded = ROUTE_POLICY.filter((p) => p.roles.length > 0);
  const pairs = guarded.flatMap((p) => ROLES.map((role) => [`${p.method} ${p.path}`, role, p] as const));

  it('the route table covers the public health route and every role has at least one route', () => {
    expect(ROUTE_POLICY.filter((p) => p.roles.length === 0).map((p) => p.path)).toEqual(['/health']);
    for (const role of ROLES) expect(guarded.some((p) => p.roles.includes(role))).toBe(true);
  });

  it.each(pairs)('%s as %s', async (_name, role, p) => {
    const before = await lastAuditId();
    const res = await call(p, t.auth(role));
    await res.arrayBuffer();
    // A role the route allows only with a scoped token (route-policy.ts `scopedOnly`): the test
    // tokens have no scopes, so it is refused for its scope (scoped tokens: the tests below).
    const scopedOnly = p.scopedOnly?.includes(role) ?? false;
    if (p.roles.includes(role) && !scopedOnly) {
      expect([401, 403]).not.toContain(res.status);
      expect(res.status).toBeLessThan(500);
      expect((await auditAfter(before)).filter((e) => e.kind === 'access-refused')).toEqual([]);
    } else {
      expect(res.status).toBe(403);
      const refused = (await auditAfter(before)).filter((e) => e.kind === 'access-refused');
      expect(refused).toHaveLength(1);
      expect(refused[0]).toMatchObject({
        outcome: 8,
        event_id: '110113',
        actor: `api-token:${tokenIds.get(role)}`,
        detail: expect.objectContaining({
          reason: scopedOnly ? 'scope' : 'role',
          role,
          method: p.method,
          route: p.path,
        }),
      });
      expect(refused[0]?.source).toMatch(/127\.0\.0\.1$/);
    }
  });

  it('an allowed call does what the route says (auditor reads, operator lists jobs, admin manages tokens)', async () => {
    const audit = await fetch(`${t.gw.baseUrl}/api/audit/events?limit=5`, { headers: t.auth('auditor') });
    expect(audit.status).toBe(200);
    // The Audit Log Used event names the authenticated caller, not just an address.
    const { rows } = await t.gw.db.pool.query<{ actor: string }>(
      "SELECT actor FROM audit_events WHERE kind = 'audit-query' ORDER BY id DESC LIMIT 1",
    );
    expect(rows[0]?.actor).toBe(`api-token:${tokenIds.get('auditor')}`);
    const jobs = await fetch(`${t.gw.baseUrl}/api/jobs`, { headers: t.auth('operator') });
    expect(jobs.status).toBe(200);
    expect(Array.isArray(((await jobs.json()) as { jobs: unknown[] }).jobs)).toBe(true);

    const created = await fetch(`${t.gw.baseUrl}/api/tokens`, {
      method: 'POST',
      headers: { ...t.auth('admin'), 'content-type': 'application/json' },
      body: JSON.stringify({ name: 'ward scanner', role: 'ingest', scopes: ['/dicomweb/studies'] }),
    });
    expect(created.status).toBe(201);
    const tok = (await created.json()) as { id: string; secret: string; role: string };
    expect(tok.role).toBe('ingest');
    const listed = (await (await fetch(`${t.gw.baseUrl}/api/tokens`, { headers: t.auth('admin') })).json()) as {
      tokens: Record<string, unknown>[];
    };
    expect(listed.tokens.some((x) => x.id === tok.id)).toBe(true);
    expect(JSON.stringify(listed)).not.toContain(tok.secret);
    const stored = await t.gw.db.pool.query<{ token_hash: string }>('SELECT token_hash FROM api_tokens WHERE id = $1', [
      tok.id,
    ]);
    expect(stored.rows[0]?.token_hash).toMatch(/^[0-9a-f]{64}$/);
    expect(stored.rows[0]?.token_hash).not.toContain(tok.secret);
    // The new token works for its role, then is revoked by the admin API and refused.
    const asNew = await fetch(`${t.gw.baseUrl}/dicomweb/studies`, {
      method: 'POST',
      headers: { ...bearer(tok.secret), 'content-type': 'application/json' },
      body: '{}',
    });
    expect(asNew.status).toBe(415);
    const del = await fetch(`${t.gw.baseUrl}/api/tokens/${tok.id}`, { method: 'DELETE', headers: t.auth('admin') });
    expect(del.status).toBe(200);
    expect(((await del.json()) as { revokedAt: string | null }).revokedAt).not.toBeNull();
    const after = await fetch(`${t.gw.baseUrl}/api/audit`, { headers: bearer(tok.secret) });
    expect(after.status).toBe(401);
    const changes = await t.gw.db.pool.query<{ detail: Record<string, unknown>; actor: string }>(
      "SELECT detail, actor FROM audit_events WHERE kind = 'security-configuration' AND detail->>'tokenId' = $1 ORDER BY id",
      [tok.id],
    );
    expect(changes.rows.map((r) => [r.detail.action, r.detail.tokenId, r.actor])).toEqual([
      ['token-created', tok.id, `api-token:${tokenIds.get('admin')}`],
      ['token-revoked', tok.id, `api-token:${tokenIds.get('admin')}`],
    ]);
  });

  it('/health needs no token; /metrics and the API do (401 with WWW-Authenticate: Bearer)', async () => {
    expect((await fetch(`${t.gw.baseUrl}/health`)).status).toBe(200);
    for (const p of guarded) {
      const res = await call(p, {});
      expect({ route: p.path, status: res.status }).toEqual({ route: p.path, status: 401 });
      expect(res.headers.get('www-authenticate')).toMatch(/^Bearer realm="radscribe"$/);
      expect(((await res.json()) as { code: string }).code).toBe('unauthenticated');
    }
    // An unknown path without a token is a 401 too: an anonymous caller learns nothing of the routes.
    expect((await fetch(`${t.gw.baseUrl}/no/such/thing`)).status).toBe(401);
    expect((await fetch(`${t.gw.baseUrl}/no/such/thing`, { headers: t.auth('auditor') })).status).toBe(404);
    // Other spellings of a guarded path (express routes case-insensitively) never reach a router
    // unchecked: the table matches exactly, anything else is 404 before the routers.
    for (const p of ['/API/audit', '/api/Audit/events', '/api//audit', '/api/%61udit', '/DICOMWEB/studies'])
      expect({ p, status: (await fetch(`${t.gw.baseUrl}${p}`, { headers: t.auth('ingest') })).status }).toEqual({
        p,
        status: 404,
      });
    expect((await fetch(`${t.gw.baseUrl}/api/audit/`, { headers: t.auth('ingest') })).status).toBe(403);
  });

  it('missing, malformed, unknown, expired and revoked tokens: 401, each audited without the secret', async () => {
    const pool = t.gw.db.pool;
    const expired = await createApiToken(pool, { name: 'expired', role: 'auditor', createdBy: 'test' });
    await pool.query(
      "UPDATE api_tokens SET created_at = now() - interval '2 days', expires_at = now() - interval '1 day' WHERE id = $1",
      [expired.token.id],
    );
    const revoked = await createApiToken(pool, { name: 'revoked', role: 'auditor', createdBy: 'test' });
    await revokeApiToken(pool, revoked.token.id);
    const unknown = `rsk_${'A'.repeat(43)}`;
    const cases: [string, Record<string, string>, string, string][] = [
      ['missing', {}, 'missing', 'anonymous'],
      ['basic scheme', { authorization: 'Basic dXNlcjpwYXNz' }, 'malformed', 'anonymous'],
      ['malformed', bearer('not a token'), 'malformed', 'anonymous'],
      ['unknown', bearer(unknown), 'unknown', 'anonymous'],
      ['expired', bearer(expired.secret), 'expired', `api-token:${expired.token.id}`],
      ['revoked', bearer(revoked.secret), 'revoked', `api-token:${revoked.token.id}`],
    ];
    for (const [what, headers, reason, actor] of cases) {
      const before = await lastAuditId();
      const res = await fetch(`${t.gw.baseUrl}/api/audit/events`, { headers });
      expect({ what, status: res.status }).toEqual({ what, status: 401 });
      expect(res.headers.get('www-authenticate')).toMatch(/^Bearer realm="radscribe"/);
      const events = await auditAfter(before);
      expect({ what, events: events.map((e) => [e.kind, e.outcome, e.event_id, e.actor, e.detail.reason]) }).toEqual({
        what,
        events: [['user-authentication', 4, '110114', actor, reason]],
      });
      expect(events[0]?.source).toMatch(/127\.0\.0\.1$/);
      expect(events[0]?.detail.route).toBe('/api/audit/events');
    }
    const all = await pool.query<{ t: string }>(
      "SELECT string_agg(row_to_json(a)::text, '\n') AS t FROM audit_events a",
    );
    for (const secret of [expired.secret, revoked.secret, unknown, ...Object.values(t.tokens)])
      expect(all.rows[0]?.t).not.toContain(secret);
  });

  it('the first use of a token is audited once (user-authentication, outcome 0)', async () => {
    const pool = t.gw.db.pool;
    const fresh = await createApiToken(pool, { name: 'first use', role: 'operator', createdBy: 'test' });
    for (let i = 0; i < 3; i++)
      expect((await fetch(`${t.gw.baseUrl}/api/jobs`, { headers: bearer(fresh.secret) })).status).toBe(200);
    const { rows } = await pool.query<AuditRow>(
      "SELECT kind, outcome, detail FROM audit_events WHERE kind = 'user-authentication' AND actor = $1",
      [`api-token:${fresh.token.id}`],
    );
    expect(rows.map((r) => [r.outcome, r.detail.firstUse, r.detail.role])).toEqual([[0, true, 'operator']]);
  });

  it('an ingest token scoped to one study path may push there and nowhere else', async () => {
    const pool = t.gw.db.pool;
    const scoped = await createApiToken(pool, {
      name: 'scoped',
      role: 'ingest',
      scopes: [`/dicomweb/studies/${STUDY}`],
      createdBy: 'test',
    });
    const post = (p: string) =>
      fetch(`${t.gw.baseUrl}${p}`, {
        method: 'POST',
        headers: { ...bearer(scoped.secret), 'content-type': 'application/json' },
        body: '{}',
      });
    expect((await post(`/dicomweb/studies/${STUDY}`)).status).toBe(415);
    const before = await lastAuditId();
    expect((await post('/dicomweb/studies')).status).toBe(403);
    expect((await auditAfter(before)).map((e) => [e.kind, e.detail.reason])).toEqual([['access-refused', 'scope']]);
    // WADO-RS: the same token may read back under its study path (404 here: nothing held), not elsewhere.
    expect((await fetch(`${t.gw.baseUrl}/dicomweb/studies/${STUDY}`, { headers: bearer(scoped.secret) })).status).toBe(
      404,
    );
    expect((await fetch(`${t.gw.baseUrl}/dicomweb/studies/${STUDY}9`, { headers: bearer(scoped.secret) })).status).toBe(
      403,
    );
  });

  it('a token scoped to a per-AE path (/dicomweb/aets/CT_AI) may store and retrieve there only', async () => {
    const scoped = await createApiToken(t.gw.db.pool, {
      name: 'ae scoped',
      role: 'ingest',
      scopes: ['/dicomweb/aets/CT_AI'],
      createdBy: 'test',
    });
    const post = (p: string) =>
      fetch(`${t.gw.baseUrl}${p}`, {
        method: 'POST',
        headers: { ...bearer(scoped.secret), 'content-type': 'application/json' },
        body: '{}',
      });
    // Past access control: this gateway has no listener CT_AI, so the router answers 404.
    expect((await post('/dicomweb/aets/CT_AI/studies')).status).toBe(404);
    expect((await post('/dicomweb/aets/CT_AI2/studies')).status).toBe(403);
    expect((await post('/dicomweb/studies')).status).toBe(403);
    const get = (p: string) => fetch(`${t.gw.baseUrl}${p}`, { headers: bearer(scoped.secret) });
    expect((await get(`/dicomweb/aets/CT_AI/studies/${STUDY}`)).status).toBe(404);
    expect((await get(`/dicomweb/studies/${STUDY}`)).status).toBe(403);
  });

  it('/metrics is public only when http.metricsPublic is set', () => {
    expect(policyFor('GET', '/metrics')?.roles).toEqual(['admin', 'operator']);
    expect(policyFor('GET', '/metrics', { metricsPublic: true })?.roles).toEqual([]);
    expect(policyFor('HEAD', '/health')?.roles).toEqual([]);
    expect(policyFor('GET', '/dicomweb/studies')).toBeUndefined();
  });
});
