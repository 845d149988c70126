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
import { childLogger } from './logger.js';

/**
 * Express app factory (STYLE §2.1: only app.ts and *-router.ts import express). Routers are built by
 * the gateway and passed in; the error middleware is last and is the one place HTTP statuses are
 * chosen for thrown errors (STYLE rule 3).
 */
export interface AppDeps {
  readonly dicomweb: Router;
  readonly health: () => Promise<{ ok: boolean; body: Record<string, unknown> }>;
  readonly api?: Router;
  /** Prometheus text exposition for GET /metrics. */
  readonly metrics?: () => Promise<string>;
}

export function createApp(deps: AppDeps): express.Express {
  const app = express();
  app.disable('x-powered-by');
  // Multipart STOW bodies are streamed by the DICOMweb router; no body parser is installed globally.
  app.use('/dicomweb', deps.dicomweb);
  if (deps.api) app.use('/api', deps.api);
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
    res.status(status).json({ code, message: clientMessage(err) });
  };
}
