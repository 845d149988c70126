import express, { type Router } from 'express';
import type pg from 'pg';
import { ErrorCode, RadScribeError } from '../errors.js';
import { JobQueue } from './job-queue.js';
import { JobState } from './types.js';

const STATES: readonly string[] = Object.values(JobState);

/**
 * GET /api/jobs (operator, admin): the job queue, newest first, filtered by `state` and `study`.
 * Ids, states, UIDs and error codes only: no payload, result or error text (no PHI, STYLE §2.6).
 */
export function createJobsRouter(deps: { readonly pool: pg.Pool }): Router {
  const r = express.Router();
  const queue = new JobQueue(deps.pool);
  r.get('/jobs', async (req, res, next) => {
    try {
      const state = req.query.state;
      const study = req.query.study;
      if (state !== undefined && (typeof state !== 'string' || !STATES.includes(state)))
        throw new RadScribeError(ErrorCode.RequestInvalid, `state: must be one of ${STATES.join(', ')}`);
      if (study !== undefined && typeof study !== 'string')
        throw new RadScribeError(ErrorCode.RequestInvalid, 'study: give it once');
      const jobs = await queue.list({
        ...(state ? { state: state as JobState } : {}),
        ...(study ? { studyInstanceUid: study } : {}),
      });
      res.json({
        jobs: jobs.map((j) => ({
          id: j.id,
          kind: j.kind,
          state: j.state,
          studyInstanceUid: j.studyInstanceUid,
          attempts: j.attempts,
          maxAttempts: j.maxAttempts,
          errorCode: j.errorCode,
          createdAt: j.createdAt.toISOString(),
          updatedAt: j.updatedAt.toISOString(),
        })),
      });
    } catch (err: unknown) {
      next(err);
    }
  });
  return r;
}
