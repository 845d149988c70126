import type { Router } from 'express';
import express, { type NextFunction, type Request, type Response } from 'express';
import { ErrorCode, errorCodeOf, normalizeErrorString, RadScribeError, toHttpStatus } from './errors.js';
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
  const log = childLogger('http');
  app.use((err: unknown, req: Request, res: Response, _next: NextFunction) => {
    const code = errorCodeOf(err);
    const status = toHttpStatus(code);
    if (status >= 500) log.error('request failed', { method: req.method, path: req.path, code });
    if (res.headersSent) {
      res.end();
      return;
    }
    res.status(status).json({
      error: code,
      message: status >= 500 && code === ErrorCode.Internal ? 'internal error' : normalizeErrorString(err),
    });
  });
  return app;
}
