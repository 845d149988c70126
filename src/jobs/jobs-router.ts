import express, { type Router } from 'express';
import type pg from 'pg';
import { ErrorCode, RadScribeError } from '../errors.js';
import { JobQueue } from './job-queue.js';
import { forceStudyComplete } from './study-completion.js';
import { JobState } from './types.js';

const STATES: readonly string[] = Object.values(JobState);

/**
 * GET /api/jobs (operator, admin): the job queue, newest first, filtered by `state` and `study`;
 * POST /api/studies/{study}/complete (operator, admin): force a study complete.
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
  // POST /api/studies/{study}/complete (operator, admin): queue the study's describe job now, as
  // if its inactivity window had passed (study-completion.ts). 202: the job is queued, not run.
  r.post('/studies/:study/complete', async (req, res, next) => {
    try {
      const study = req.params.study;
      if (!/^[0-9.]{1,64}$/.test(study)) throw new RadScribeError(ErrorCode.RequestInvalid, 'study: not a UID');
      const actor = typeof res.locals.user === 'string' ? res.locals.user : 'unknown';
      const source = req.socket.remoteAddress;
      const done = await forceStudyComplete(deps.pool, study, { actor, ...(source ? { source } : {}) }, queue);
      res.status(202).json({ studyInstanceUid: study, jobId: done.jobId, previousState: done.previousState });
    } catch (err: unknown) {
      next(err);
    }
  });
  return r;
}
