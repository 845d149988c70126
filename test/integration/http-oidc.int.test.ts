import type { Server } from 'node:http';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { backends, startTestGateway, type TestGateway } from '../support/gateway.js';

/**
 * Issue 12, Access: OIDC bearer JWTs verified with `jose` against an issuer's JWKS served on
 * loopback (port 0): signature, `iss`, `aud`, `exp`, `nbf` with clock skew, an unknown `kid`
 * (key rotation) fetched anew, HMAC and `none` refused, the role from the `roles` claim. Each
 * refusal is a 401 audited as user-authentication outcome 4 with jose's reason.
 *
 * jose (6.2.17) is a dependency since issue 12; the test fails, not skips, without it.
 */
/** The part of jose's API the test uses (typed here: jose may not be installed). */
interface JwtBuilder {
  setProtectedHeader(h: Record<string, unknown>): JwtBuilder;
  setIssuer(i: string): JwtBuilder;
  setAudience(a: string): JwtBuilder;
  setSubject(s: string): JwtBuilder;
  setIssuedAt(): JwtBuilder;
  setExpirationTime(t: number): JwtBuilder;
  setNotBefore(t: number): JwtBuilder;
  sign(key: unknown): Promise<string>;
}
interface Jose {
  generateKeyPair(alg: string): Promise<{ publicKey: unknown; privateKey: unknown }>;
  exportJWK(key: unknown): Promise<Record<string, unknown>>;
  SignJWT: new (payload: Record<string, unknown>) => JwtBuilder;
}

const JOSE: string = 'jose';
const d = describe.each(backends());

d('OIDC bearer JWTs on %s', (backend) => {
  let jose: Jose;
  let jwks: Server;
  let jwksUrl: string;
  let fetches = 0;
  const keys: Record<string, unknown>[] = [];
  let t: TestGateway;
  let signer: { privateKey: unknown; kid: string };
  const issuer = 'https://idp.hospital.example/realms/radiology';
  const audience = 'radscribe';

  beforeAll(async () => {
    jose = (await import(JOSE)) as Jose;
    const k1 = await jose.generateKeyPair('ES256');
    keys.push({ ...(await jose.exportJWK(k1.publicKey)), kid: 'k1', alg: 'ES256', use: 'sig' });
    signer = { privateKey: k1.privateKey, kid: 'k1' };
    jwks = createServer((_req, res) => {
      fetches++;
      res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ keys }));
    });
    await new Promise<void>((r) => jwks.listen(0, '127.0.0.1', r));
    jwksUrl = `http://127.0.0.1:${(jwks.address() as AddressInfo).port}/certs`;
    t = await startTestGateway(backend, {
      http: {
        host: '127.0.0.1',
        port: 0,
        oidc: { issuer, audience, jwksUri: jwksUrl, clockToleranceSeconds: 30, jwksCooldownMs: 0 },
      },
    });
  });
  afterAll(async () => {
    await t?.close();
    await new Promise((r) => jwks?.close(r));
  });

  const now = () => Math.floor(Date.now() / 1000);
  async function jwt(
    claims: Record<string, unknown> = {},
    o: { iss?: string; aud?: string; exp?: number; nbf?: number; key?: { privateKey: unknown; kid: string } } = {},
  ): Promise<string> {
    const k = o.key ?? signer;
    let b = new jose.SignJWT({ roles: ['auditor'], ...claims })
      .setProtectedHeader({ alg: 'ES256', kid: k.kid })
      .setIssuer(o.iss ?? issuer)
      .setAudience(o.aud ?? audience)
      .setSubject('alice@hospital.example')
      .setIssuedAt()
      .setExpirationTime(o.exp ?? now() + 300);
    if (o.nbf !== undefined) b = b.setNotBefore(o.nbf);
    return b.sign(k.privateKey);
  }
  const get = (token: string, p = '/api/audit/events?limit=1') =>
    fetch(`${t.gw.baseUrl}${p}`, { headers: { authorization: `Bearer ${token}` } });
  async function lastRefusal(): Promise<{ outcome: number; detail: Record<string, unknown>; actor: string }> {
    const { rows } = await t.gw.db.pool.query<{ outcome: number; detail: Record<string, unknown>; actor: string }>(
      "SELECT outcome, detail, actor FROM audit_events WHERE kind = 'user-authentication' ORDER BY id DESC LIMIT 1",
    );
    return rows[0] as { outcome: number; detail: Record<string, unknown>; actor: string };
  }

  it('a valid token is the principal of its sub and role; the role is enforced', async () => {
    const ok = await get(await jwt());
    expect(ok.status).toBe(200);
    const { rows } = await t.gw.db.pool.query<{ actor: string }>(
      "SELECT actor FROM audit_events WHERE kind = 'audit-query' ORDER BY id DESC LIMIT 1",
    );
    expect(rows[0]?.actor).toBe('oidc:alice@hospital.example');
    // An auditor may not list tokens: 403, audited as access-refused.
    expect((await get(await jwt(), '/api/tokens')).status).toBe(403);
    expect((await get(await jwt({ roles: 'admin' }), '/api/tokens')).status).toBe(200);
  });

  it('expiry and not-before honour the clock skew (30 s)', async () => {
    expect((await get(await jwt({}, { exp: now() - 10 }))).status).toBe(200);
    expect((await get(await jwt({}, { exp: now() - 120 }))).status).toBe(401);
    expect((await lastRefusal()).detail.reason).toBe('ERR_JWT_EXPIRED:exp');
    expect((await get(await jwt({}, { nbf: now() + 10 }))).status).toBe(200);
    expect((await get(await jwt({}, { nbf: now() + 120 }))).status).toBe(401);
    expect((await lastRefusal()).detail.reason).toBe('ERR_JWT_CLAIM_VALIDATION_FAILED:nbf');
  });

  it('wrong issuer, audience, signature, algorithm or role claim: 401, audited', async () => {
    const other = await jose.generateKeyPair('ES256');
    const cases: [string, Promise<string> | string, string][] = [
      ['issuer', jwt({}, { iss: 'https://evil.example' }), 'ERR_JWT_CLAIM_VALIDATION_FAILED:iss'],
      ['audience', jwt({}, { aud: 'someone-else' }), 'ERR_JWT_CLAIM_VALIDATION_FAILED:aud'],
      // Signed by a key that is not the issuer's, under the issuer's key id.
      [
        'signature',
        jwt({}, { key: { privateKey: other.privateKey, kid: 'k1' } }),
        'ERR_JWS_SIGNATURE_VERIFICATION_FAILED',
      ],
      ['no role', jwt({ roles: ['radiologist'] }), 'no-role'],
      ['two roles', jwt({ roles: ['auditor', 'admin'] }), 'no-role'],
    ];
    // alg none: header {"alg":"none"} and no signature.
    const b64 = (o: object) => Buffer.from(JSON.stringify(o)).toString('base64url');
    const claims = { iss: issuer, aud: audience, sub: 'mallory', roles: ['admin'], exp: now() + 300 };
    cases.push(['alg none', `${b64({ alg: 'none' })}.${b64(claims)}.`, 'ERR_JOSE_ALG_NOT_ALLOWED']);
    const { createHmac } = await import('node:crypto');
    const h = `${b64({ alg: 'HS256', kid: 'k1' })}.${b64(claims)}`;
    cases.push([
      'HMAC',
      `${h}.${createHmac('sha256', JSON.stringify(keys[0])).update(h).digest('base64url')}`,
      'ERR_JOSE_ALG_NOT_ALLOWED',
    ]);
    for (const [what, token, reason] of cases) {
      const res = await get(await token);
      expect({ what, status: res.status }).toEqual({ what, status: 401 });
      expect(res.headers.get('www-authenticate')).toBe('Bearer realm="radscribe", error="invalid_token"');
      const ev = await lastRefusal();
      expect({ what, outcome: ev.outcome, reason: ev.detail.reason, actor: ev.actor }).toEqual({
        what,
        outcome: 4,
        reason,
        actor: 'anonymous',
      });
    }
  });

  it('a rotated key (new kid) is fetched from the JWKS without a restart', async () => {
    const k2 = await jose.generateKeyPair('ES256');
    const before = fetches;
    expect((await get(await jwt({}, { key: { privateKey: k2.privateKey, kid: 'k2' } }))).status).toBe(401);
    keys.push({ ...(await jose.exportJWK(k2.publicKey)), kid: 'k2', alg: 'ES256', use: 'sig' });
    expect((await get(await jwt({}, { key: { privateKey: k2.privateKey, kid: 'k2' } }))).status).toBe(200);
    expect(fetches).toBeGreaterThan(before);
    // The old key still verifies from the cache.
    expect((await get(await jwt())).status).toBe(200);
  });
});
