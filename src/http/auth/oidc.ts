import type { OidcConfig } from '../../config.js';
import type { BearerVerifier } from './access-control.js';
import { AuthenticationError } from './api-tokens.js';
import { isRole, type Principal, PrincipalKind, type Role } from './roles.js';

/**
 * OIDC bearer JWTs (issue 12, Access; RFC 7519, RFC 9068 JWT access tokens), verified with `jose`
 * (no hand-written crypto): the signature against the issuer's JWKS (RFC 7517; keys cached, an
 * unknown `kid` refetches the set, so rotation needs no restart), `iss`, `aud`, `exp` and `nbf`
 * with the configured clock skew. Only asymmetric algorithms are accepted (a JWKS holds public
 * keys; `none` and HMAC would let anyone who knows the set forge a token). The role comes from the
 * configured claim; the principal id is `sub`.
 *
 * `jose` is ECMAScript-module only and loaded on first use with a dynamic import, so the gateway
 * without OIDC configured does not need it.
 */
export const JWT_ALGORITHMS = [
  'RS256',
  'RS384',
  'RS512',
  'PS256',
  'PS384',
  'PS512',
  'ES256',
  'ES384',
  'ES512',
  'EdDSA',
];

/** The part of jose's API used here (jose 6: createRemoteJWKSet, jwtVerify). */
interface JoseApi {
  createRemoteJWKSet(
    url: URL,
    options?: { cooldownDuration?: number; cacheMaxAge?: number; timeoutDuration?: number },
  ): unknown;
  jwtVerify(
    jwt: string,
    key: unknown,
    options: {
      issuer: string;
      audience: string;
      clockTolerance: number;
      algorithms: string[];
      requiredClaims: string[];
    },
  ): Promise<{ payload: Record<string, unknown> }>;
}

/** Non-literal, so that the type checker does not need jose's types to build the gateway. */
const JOSE_MODULE: string = 'jose';

async function loadJose(): Promise<JoseApi> {
  return (await import(JOSE_MODULE)) as JoseApi;
}

/** Why a JWT was refused (detail.reason of the user-authentication event); jose's error codes. */
function reasonOf(err: unknown): string {
  const code = (err as { code?: unknown }).code;
  if (typeof code === 'string' && code.startsWith('ERR_J')) {
    const claim = (err as { claim?: unknown }).claim;
    return typeof claim === 'string' ? `${code}:${claim}` : code;
  }
  return 'jwt-invalid';
}

function roleOf(payload: Record<string, unknown>, claim: string): Role | undefined {
  const v = payload[claim];
  const values = Array.isArray(v) ? v : [v];
  const roles = values.filter(isRole);
  // Exactly one RadScribe role: a token naming several is ambiguous and refused.
  return roles.length === 1 ? roles[0] : undefined;
}

export function oidcVerifier(cfg: OidcConfig, load: () => Promise<JoseApi> = loadJose): BearerVerifier {
  let ready: Promise<{ jose: JoseApi; keys: unknown }> | undefined;
  const init = () => {
    ready ??= load().then((jose) => ({
      jose,
      keys: jose.createRemoteJWKSet(new URL(cfg.jwksUri), {
        cooldownDuration: cfg.jwksCooldownMs,
        cacheMaxAge: cfg.jwksCacheMaxAgeMs,
        timeoutDuration: 5000,
      }),
    }));
    return ready;
  };
  return async (token: string): Promise<Principal> => {
    const { jose, keys } = await init();
    let payload: Record<string, unknown>;
    try {
      ({ payload } = await jose.jwtVerify(token, keys, {
        issuer: cfg.issuer,
        audience: cfg.audience,
        clockTolerance: cfg.clockToleranceSeconds,
        algorithms: JWT_ALGORITHMS,
        requiredClaims: ['exp', 'sub'],
      }));
    } catch (err: unknown) {
      throw new AuthenticationError(reasonOf(err));
    }
    const role = roleOf(payload, cfg.roleClaim);
    if (!role) throw new AuthenticationError('no-role');
    const sub = String(payload.sub);
    return { kind: PrincipalKind.Oidc, id: sub, name: sub, role, scopes: [] };
  };
}
