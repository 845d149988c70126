import { Role } from './roles.js';

/**
 * The one declarative table of who may call what (issue 12, Access). The app's authorization
 * middleware looks every request up here, and test/integration/http-auth.int.test.ts iterates over
 * it (one test per role × route). `/health` is the only public route, `/metrics` too when
 * `http.metricsPublic` is set. A request that matches no row still needs valid credentials (401
 * without them), then is 404 before any router runs: an anonymous caller learns nothing about the
 * routes, and no other spelling of a path reaches a handler unchecked.
 */
export const HttpMethod = { Get: 'GET', Post: 'POST', Put: 'PUT', Delete: 'DELETE' } as const;
export type HttpMethod = (typeof HttpMethod)[keyof typeof HttpMethod];

export interface RoutePolicy {
  readonly method: HttpMethod;
  /** Express-style path; `:name` matches one path segment. */
  readonly path: string;
  /** Roles allowed; empty = public (no credentials asked). */
  readonly roles: readonly Role[];
  /**
   * Roles among `roles` allowed only with a token narrowed by scopes (path prefixes): an ingest
   * token may read back what it may write, e.g. scope /dicomweb/aets/CT_AI, never everything.
   */
  readonly scopedOnly?: readonly Role[];
  /** What the route does, for the README matrix and the audit detail. */
  readonly purpose: string;
}

export const ROUTE_POLICY: readonly RoutePolicy[] = [
  { method: 'GET', path: '/health', roles: [], purpose: 'liveness and readiness' },
  { method: 'GET', path: '/metrics', roles: [Role.Admin, Role.Operator], purpose: 'Prometheus metrics' },
  { method: 'POST', path: '/dicomweb/studies', roles: [Role.Ingest], purpose: 'STOW-RS store instances' },
  {
    method: 'POST',
    path: '/dicomweb/studies/:study',
    roles: [Role.Ingest],
    purpose: 'STOW-RS store instances of one study',
  },
  {
    method: 'POST',
    path: '/dicomweb/aets/:aet/studies',
    roles: [Role.Ingest],
    purpose: 'STOW-RS store instances to one local AE',
  },
  {
    method: 'POST',
    path: '/dicomweb/aets/:aet/studies/:study',
    roles: [Role.Ingest],
    purpose: 'STOW-RS store instances of one study to one local AE',
  },
  ...retrieveRoutes('/dicomweb'),
  ...retrieveRoutes('/dicomweb/aets/:aet'),
  { method: 'GET', path: '/api/audit', roles: [Role.Auditor], purpose: 'audit trail listing' },
  { method: 'GET', path: '/api/audit/events', roles: [Role.Auditor], purpose: 'audit query and CSV export' },
  { method: 'GET', path: '/api/jobs', roles: [Role.Operator, Role.Admin], purpose: 'job queue listing' },
  {
    method: 'POST',
    path: '/api/studies/:study/complete',
    roles: [Role.Operator, Role.Admin],
    purpose: 'force a study complete (queue its describe job now)',
  },
  {
    method: 'POST',
    path: '/api/v1/rules/test',
    roles: [Role.Admin, Role.Operator],
    purpose: 'routing rule tester: which rules match a study or a DICOM file, and why',
  },
  { method: 'GET', path: '/api/tokens', roles: [Role.Admin], purpose: 'list API tokens' },
  { method: 'POST', path: '/api/tokens', roles: [Role.Admin], purpose: 'create an API token' },
  { method: 'DELETE', path: '/api/tokens/:id', roles: [Role.Admin], purpose: 'revoke an API token' },
  ...configRoutes('/api/v1/local-aes', ':aet', 'local AE (DIMSE listener)'),
  ...configRoutes('/api/v1/remote-nodes', ':name', 'remote node'),
];

/** The admin API's configuration resources (src/http/admin/admin-router.ts): admin only. */
function configRoutes(base: string, param: string, what: string): RoutePolicy[] {
  const roles = [Role.Admin];
  return [
    { method: HttpMethod.Get, path: base, roles, purpose: `list ${what}s` },
    { method: HttpMethod.Post, path: base, roles, purpose: `create a ${what}` },
    { method: HttpMethod.Get, path: `${base}/${param}`, roles, purpose: `read a ${what} (with its ETag)` },
    { method: HttpMethod.Put, path: `${base}/${param}`, roles, purpose: `replace a ${what} (If-Match)` },
    { method: HttpMethod.Delete, path: `${base}/${param}`, roles, purpose: `delete a ${what} (If-Match)` },
  ];
}

/**
 * WADO-RS retrieve of what RadScribe holds (PS3.18 §10.4): operators (who look after the studies in
 * the pipeline), and ingest tokens only when scoped, so a sender reads back what it may write and
 * nothing else. Not admin: token management and data access stay separate duties (an admin who
 * needs the data issues an operator token, which is audited as security-configuration).
 */
function retrieveRoutes(base: string): RoutePolicy[] {
  const roles = [Role.Operator, Role.Ingest];
  const scopedOnly = [Role.Ingest];
  return [
    { path: `${base}/studies/:study`, purpose: 'WADO-RS retrieve a study' },
    { path: `${base}/studies/:study/series/:series`, purpose: 'WADO-RS retrieve a series' },
    {
      path: `${base}/studies/:study/series/:series/instances/:instance`,
      purpose: 'WADO-RS retrieve an instance',
    },
  ].map((r) => ({ method: HttpMethod.Get, roles, scopedOnly, ...r }));
}

function matches(pattern: string, path: string): boolean {
  const p = pattern.split('/');
  const a = path.replace(/\/+$/, '').split('/');
  if (a.length === 1 && a[0] === '') a.push('');
  if (p.length !== a.length) return false;
  return p.every((seg, i) => (seg.startsWith(':') ? (a[i] ?? '') !== '' : seg === a[i]));
}

/** The policy row of a request, or undefined (deny by default). HEAD is looked up as GET. */
export function policyFor(
  method: string,
  path: string,
  options: { metricsPublic?: boolean } = {},
): RoutePolicy | undefined {
  const m = method === 'HEAD' ? 'GET' : method;
  const row = ROUTE_POLICY.find((r) => r.method === m && matches(r.path, path));
  if (row && row.path === '/metrics' && options.metricsPublic) return { ...row, roles: [] };
  return row;
}
