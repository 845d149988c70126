import type { NextFunction, Request, Response } from 'express';
import { PreconditionFailedError } from '../../config/ae-store.js';
import { clientMessage, ErrorCode, errorCodeOf, RadScribeError, toHttpStatus } from '../../errors.js';
import { childLogger } from '../../logger.js';

/**
 * RFC 9457 problem details for the admin API (/api/v1): `application/problem+json` with `type`
 * (a URN per error code; no page to dereference), `title`, `status`, `detail`, and for a request
 * that failed validation `errors`: every problem at once, each with a JSON Pointer (RFC 6901) into
 * the request body, as the configuration validator reports them for the YAML file.
 */

export const PROBLEM_MEDIA_TYPE = 'application/problem+json';

export interface ProblemItem {
  /** RFC 6901 pointer into the request body ('' = the whole body). */
  readonly pointer: string;
  readonly detail: string;
}

/** A request body that failed validation; `errors` lists every problem. */
export class ValidationProblem extends RadScribeError {
  override name = 'ValidationProblem';
  readonly errors: readonly ProblemItem[];
  constructor(errors: readonly ProblemItem[]) {
    super(ErrorCode.RequestInvalid, `the request body has ${errors.length} problem${errors.length === 1 ? '' : 's'}`);
    this.errors = errors;
  }
}

/** If-Match missing on a PUT or DELETE (RFC 6585 §3: 428 Precondition Required). */
export class PreconditionRequiredError extends RadScribeError {
  override name = 'PreconditionRequiredError';
  constructor() {
    super(ErrorCode.RequestInvalid, 'If-Match is required: send the ETag of the version you are replacing');
  }
}

/**
 * "body.allowedHosts[0]: not an IP address …" → { pointer: '/allowedHosts/0', detail: 'not an IP …' }.
 * `root` is the path prefix the validator was given.
 */
export function problemItem(problem: string, root: string): ProblemItem {
  const i = problem.indexOf(': ');
  const path = i < 0 ? root : problem.slice(0, i);
  const detail = i < 0 ? problem : problem.slice(i + 2);
  const rest =
    path === root ? '' : path.startsWith(`${root}.`) || path.startsWith(`${root}[`) ? path.slice(root.length) : '';
  const pointer = rest
    .replace(/\[(\d+)\]/g, '.$1')
    .split('.')
    .filter((s) => s !== '')
    .map((s) => `/${s.replace(/~/g, '~0').replace(/\//g, '~1')}`)
    .join('');
  return { pointer, detail };
}

const TITLES: Record<number, string> = {
  400: 'Bad Request',
  401: 'Unauthorized',
  403: 'Forbidden',
  404: 'Not Found',
  409: 'Conflict',
  412: 'Precondition Failed',
  413: 'Content Too Large',
  428: 'Precondition Required',
  500: 'Internal Server Error',
  503: 'Service Unavailable',
};

function statusOf(err: unknown): number {
  if (err instanceof PreconditionFailedError) return 412;
  if (err instanceof PreconditionRequiredError) return 428;
  return toHttpStatus(errorCodeOf(err));
}

/** The admin router's error middleware (last in the router): every error as a problem document. */
export function problemHandler(): (err: unknown, req: Request, res: Response, next: NextFunction) => void {
  const log = childLogger('http:admin');
  return (err, req, res, _next) => {
    const status = statusOf(err);
    const code = errorCodeOf(err);
    if (status >= 500) log.error('admin request failed', { method: req.method, path: req.path, status, code });
    else log.info('admin request refused', { method: req.method, path: req.path, status, code });
    if (res.headersSent) {
      res.end();
      return;
    }
    const body: Record<string, unknown> = {
      type: `urn:radscribe:problem:${status === 412 ? 'precondition-failed' : status === 428 ? 'precondition-required' : code}`,
      title: TITLES[status] ?? 'Error',
      status,
      detail: clientMessage(err),
      instance: req.originalUrl,
      ...(err instanceof ValidationProblem ? { errors: err.errors } : {}),
    };
    if (err instanceof PreconditionFailedError) res.set('ETag', etagOf(err.currentRevision));
    res.status(status).type(PROBLEM_MEDIA_TYPE).send(JSON.stringify(body));
  };
}

/** The ETag of a revision: a strong validator (RFC 9110 §8.8.3), the revision as a string. */
export function etagOf(revision: number): string {
  return `"${revision}"`;
}

/**
 * The revision an If-Match names (RFC 9110 §13.1.1): `"n"` (one value; a list is refused), `*` =
 * whatever is current (undefined). Missing → 428; malformed → 412 (it cannot match).
 */
export function ifMatchRevision(header: string | undefined): number | 'any' {
  if (header === undefined || header.trim() === '') throw new PreconditionRequiredError();
  const h = header.trim();
  if (h === '*') return 'any';
  const m = /^"(\d{1,15})"$/.exec(h);
  // A weak or malformed tag never matches with strong comparison: the current revision differs.
  return m ? Number(m[1]) : -1;
}
