import { loadConfig } from '../../../src/config.js';
import { parseExpiry } from '../../../src/http/auth/api-tokens.js';
import { ROLES } from '../../../src/http/auth/roles.js';
import { policyFor, ROUTE_POLICY } from '../../../src/http/auth/route-policy.js';

/** Issue 12, Access: the route table's matching, token expiry syntax and the OIDC configuration checks. */
describe('route policy', () => {
  it('matches parameters as one segment, ignores a trailing slash, denies unknown routes', () => {
    expect(policyFor('POST', '/dicomweb/studies/1.2.3')?.path).toBe('/dicomweb/studies/:study');
    expect(policyFor('POST', '/dicomweb/studies/')?.path).toBe('/dicomweb/studies');
    expect(policyFor('POST', '/dicomweb/studies/1.2/series')).toBeUndefined();
    expect(policyFor('DELETE', '/api/tokens/7')?.roles).toEqual(['admin']);
    expect(policyFor('GET', '/api/tokens/7')).toBeUndefined();
  });
  it('every row names only known roles, and no two rows are the same route', () => {
    for (const r of ROUTE_POLICY) for (const role of r.roles) expect(ROLES).toContain(role);
    const keys = ROUTE_POLICY.map((r) => `${r.method} ${r.path}`);
    expect(new Set(keys).size).toBe(keys.length);
  });
});

describe('token expiry', () => {
  const now = new Date('2026-01-01T00:00:00Z');
  it('takes 30d, 12h, 90m and ISO date-times', () => {
    expect(parseExpiry('30d', now).toISOString()).toBe('2026-01-31T00:00:00.000Z');
    expect(parseExpiry('12h', now).toISOString()).toBe('2026-01-01T12:00:00.000Z');
    expect(parseExpiry('90m', now).toISOString()).toBe('2026-01-01T01:30:00.000Z');
    expect(parseExpiry('2026-06-01T00:00:00Z', now).toISOString()).toBe('2026-06-01T00:00:00.000Z');
    for (const bad of ['0d', 'soon', '30', '-1d']) expect(() => parseExpiry(bad, now)).toThrow(/30d/);
  });
});

describe('http.oidc configuration', () => {
  it('is off by default and, once an issuer is set, needs an audience and https (http on loopback only)', () => {
    expect(loadConfig({ env: {} }).http.oidc.issuer).toBe('');
    expect(() =>
      loadConfig({
        env: {},
        overrides: { http: { oidc: { issuer: 'http://idp.example/realm', jwksUri: 'ftp://x' } } } as never,
      }),
    ).toThrow(
      /http\.oidc\.audience: is required[\s\S]*http\.oidc\.issuer: must be an https URL[\s\S]*http\.oidc\.jwksUri: must be an https URL/,
    );
    const ok = loadConfig({
      env: {},
      overrides: {
        http: {
          oidc: { issuer: 'https://idp.example/realm/', audience: 'radscribe', jwksUri: 'http://127.0.0.1:9/certs' },
        },
      } as never,
    });
    // The issuer is compared with `iss` exactly: its trailing slash stays.
    expect(ok.http.oidc.issuer).toBe('https://idp.example/realm/');
  });
});
