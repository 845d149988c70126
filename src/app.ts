import type { Router } from 'express';
import express, { type NextFunction, type Request, type Response } from 'express';
import {
  clientMessage,
  ErrorCode,
  errorCodeOf,
  normalizeErrorString,
  RadScribeError,
  RETRY_AFTER_SECONDS,
  toHttpStatus,
} from './errors.js';
import type { AccessRequest } from './http/auth/access-control.js';
import { AuthenticationError, TokenRefusal } from './http/auth/api-tokens.js';
import { actorOf, type Principal } from './http/auth/roles.js';
import { type ConcurrencyGate, RateLimitedError, type RateLimiter } from './http/limits.js';
import { childLogger } from './logger.js';

/**
 * Express app factory (STYLE §2.1: only app.ts and *-router.ts import express). Routers are built by
 * the gateway and passed in; the error middleware is last and is the one place HTTP statuses are
 * chosen for thrown errors (STYLE rule 3).
 */
export interface AppDeps {
  /** DICOMweb routers mounted under /dicomweb, in order (STOW-RS, WADO-RS). */
  readonly dicomweb: Router | readonly Router[];
  readonly health: () => Promise<{ ok: boolean; body: Record<string, unknown> }>;
  /** Routers mounted under /api, in order. */
  readonly api?: readonly Router[];
  /** Prometheus text exposition for GET /metrics. */
  readonly metrics?: () => Promise<string>;
  /**
   * Access control (src/http/auth/access-control.ts): resolves the caller and checks the route
   * table before any router runs; throws a 401/403 error. The principal goes to `res.locals`.
   */
  readonly authorize: (req: AccessRequest) => Promise<Principal | undefined>;
  /** Request rate per caller (429) and concurrent STOW-RS uploads (503); src/http/limits.ts. */
  readonly limits?: { readonly rate?: RateLimiter; readonly uploads?: ConcurrencyGate };
}

/** The authenticated caller of a request (set by the access middleware), if any. */
export function principalOf(res: Response): Principal | undefined {
  const p: unknown = res.locals.principal;
  return p && typeof p === 'object' ? (p as Principal) : undefined;
}

export function createApp(deps: AppDeps): express.Express {
  const app = express();
  app.disable('x-powered-by');
  // Every request passes access control first (issue 12); /health is public in the route table.
  app.use(async (req, res, next) => {
    try {
      const principal = await deps.authorize({
        method: req.method,
        path: req.path,
        authorization: req.headers.authorization,
        remoteAddress: req.socket.remoteAddress,
      });
      if (principal) {
        res.locals.principal = principal;
        // The audit actor of this request (the STOW-RS router reads res.locals.user).
        res.locals.user = actorOf(principal);
        deps.limits?.rate?.take(actorOf(principal));
      }
      // STOW-RS uploads hold a spool file and a database connection: bounded while they last.
      if (req.method === 'POST' && req.path.startsWith('/dicomweb/') && deps.limits?.uploads) {
        const release = deps.limits.uploads.enter('uploads');
        res.once('close', release);
      }
      next();
    } catch (err: unknown) {
      next(err);
    }
  });
  // Multipart STOW bodies are streamed by the DICOMweb router; no body parser is installed globally.
  for (const r of [deps.dicomweb].flat()) app.use('/dicomweb', r);
  for (const r of deps.api ?? []) app.use('/api', r);
  app.get('/health', async (_req, res, next) => {
    try {
      const h = await deps.health();
      res.status(h.ok ? 200 : 503).json(h.body);
    } catch (err) {
      next(err);
    }
  });
  const metrics = deps.metrics;
  if (metrics) {
    app.get('/metrics', async (_req, res, next) => {
      try {
        res.type('text/plain; version=0.0.4').send(await metrics());
      } catch (err) {
        next(err);
      }
    });
  }
  app.use((_req, _res, next) => next(new RadScribeError(ErrorCode.NotFound, 'no such resource')));
  app.use(errorHandler());
  return app;
}

/**
 * The one place an error thrown under an HTTP route becomes a status and a body (STYLE rule 3,
 * medplum `getStatus`): the status from the error's code (`toHttpStatus`), the body
 * `{ code, message }` with a client-safe message (`clientMessage`: never a path, SQL text or stack).
 * The detail of a 5xx goes to the log instead (no PHI: messages never carry it, STYLE §2.6).
 */
export function errorHandler(): (err: unknown, req: Request, res: Response, next: NextFunction) => void {
  const log = childLogger('http');
  return (err: unknown, req: Request, res: Response, _next: NextFunction) => {
    const code = errorCodeOf(err);
    const status = toHttpStatus(code);
    // A client that went away mid-request (e.g. an aborted STOW-RS upload) gets no answer.
    // req.destroyed is also true after a normal end (autoDestroy); a gone client shows on the socket.
    if (req.socket.destroyed) {
      log.info('request aborted by client', { method: req.method, path: req.path, code });
      return;
    }
    if (status >= 500)
      log.error('request failed', {
        method: req.method,
        path: req.path,
        status,
        code,
        errorName: err instanceof Error ? err.name : typeof err,
        error: normalizeErrorString(err),
      });
    else log.info('request refused', { method: req.method, path: req.path, status, code });
    if (res.headersSent) {
      res.end();
      return;
    }
    // 503 is transient by definition here (database, resources, remote PACS): say when to come back.
    if (status === 503) res.set('Retry-After', String(RETRY_AFTER_SECONDS));
    if (err instanceof RateLimitedError) res.set('Retry-After', String(err.retryAfterSeconds));
    // RFC 6750 §3: a 401 names the scheme; a presented token that did not verify is invalid_token.
    if (status === 401)
      res.set(
        'WWW-Authenticate',
        err instanceof AuthenticationError && err.reason !== TokenRefusal.Missing
          ? 'Bearer realm="radscribe", error="invalid_token"'
          : 'Bearer realm="radscribe"',
      );
    res.status(status).json({ code, message: clientMessage(err) });
  };
}
