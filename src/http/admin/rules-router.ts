import { Transform } from 'node:stream';
import express, { type Router } from 'express';
import type pg from 'pg';
import type { RadScribeConfig } from '../../config.js';
import { isValidUid } from '../../dicom/dataset.js';
import { ErrorCode, RadScribeError } from '../../errors.js';
import { InstanceRepository } from '../../ingest/instance-repository.js';
import type { StoredInstance } from '../../ingest/types.js';
import { discardTempFile, spoolToTempFile } from '../../pacs/temp-spool.js';
import { testRulesOnFile, testRulesOnStudy } from '../../pipeline/rule-tester.js';

/**
 * POST /api/v1/rules/test (admin, operator; src/http/auth/route-policy.ts): which routing rules
 * match, and why (issue 11; src/pipeline/rule-tester.ts — the same report as `radscribe rules
 * test --json`). The body is either JSON `{"studyInstanceUid": "..."}` (a study already received)
 * or one Part 10 file as `application/dicom`, spooled to a temporary file (never held in memory,
 * at most `ingest.maxPartBytes`) and removed after the answer; `callingAeTitle` and
 * `calledAeTitle` query parameters stand in for the association a file did not come with.
 * The report holds the header values the rules look at (modality, body part, series description,
 * the tags they name): an operator's diagnostic, so it is not offered to other roles.
 */
export interface RulesRouterDeps {
  readonly config: Pick<RadScribeConfig, 'routes' | 'defaultDestination' | 'dicomLimits'>;
  readonly listInstances: (studyInstanceUid: string) => Promise<readonly StoredInstance[]>;
  readonly tmpDir: string;
  /** Largest DICOM file accepted (config ingest.maxPartBytes). */
  readonly maxFileBytes: number;
}

const JSON_LIMIT = '16kb';

function aeParam(v: unknown, name: string): string | undefined {
  if (v === undefined) return undefined;
  if (typeof v !== 'string' || v.length === 0 || v.length > 16)
    throw new RadScribeError(ErrorCode.RequestInvalid, `${name}: an AE title of 1 to 16 characters`);
  return v;
}

/** Fails the stream once more than `max` bytes went through (a body over the limit is refused, 413). */
function byteLimit(max: number): Transform {
  let n = 0;
  return new Transform({
    transform(chunk: Buffer, _enc, done) {
      n += chunk.length;
      if (n > max) done(new RadScribeError(ErrorCode.PayloadTooLarge, `DICOM file larger than ${max} bytes`));
      else done(null, chunk);
    },
  });
}

export function createRulesRouter(deps: RulesRouterDeps): Router {
  const r = express.Router();
  r.post('/v1/rules/test', express.json({ limit: JSON_LIMIT }), async (req, res, next) => {
    try {
      if (req.is('application/dicom')) {
        const declared = Number(req.headers['content-length'] ?? Number.NaN);
        if (Number.isFinite(declared) && declared > deps.maxFileBytes)
          throw new RadScribeError(ErrorCode.PayloadTooLarge, `DICOM file larger than ${deps.maxFileBytes} bytes`);
        const callingAeTitle = aeParam(req.query.callingAeTitle, 'callingAeTitle');
        const calledAeTitle = aeParam(req.query.calledAeTitle, 'calledAeTitle');
        const limited = req.pipe(byteLimit(deps.maxFileBytes));
        req.once('error', (e) => limited.destroy(e));
        const file = await spoolToTempFile(limited, deps.tmpDir, 'rules-test');
        let report: Awaited<ReturnType<typeof testRulesOnFile>>;
        try {
          report = await testRulesOnFile(deps.config, file.path, {
            ...(callingAeTitle ? { callingAeTitle } : {}),
            ...(calledAeTitle ? { calledAeTitle } : {}),
          });
        } finally {
          // Removed before the answer goes out: nothing of the caller's file outlives the request.
          await discardTempFile(file);
        }
        res.json(report);
        return;
      }
      const body: unknown = req.body;
      const uid =
        body && typeof body === 'object' && 'studyInstanceUid' in body
          ? (body as { studyInstanceUid: unknown }).studyInstanceUid
          : undefined;
      if (!req.is('application/json') || !isValidUid(uid))
        throw new RadScribeError(
          ErrorCode.RequestInvalid,
          'body: JSON {"studyInstanceUid": "<UID>"} or one DICOM file as application/dicom',
        );
      const report = await testRulesOnStudy(deps.config, deps.listInstances, uid);
      if (!report) throw new RadScribeError(ErrorCode.NotFound, `no study ${uid} is held`);
      res.json(report);
    } catch (err: unknown) {
      next(err);
    }
  });
  return r;
}

/** The router's dependencies from the gateway's config and pool (keeps the gateway's edit to one line). */
export function rulesRouterDeps(
  config: Pick<RadScribeConfig, 'routes' | 'defaultDestination' | 'dicomLimits' | 'ingest'>,
  pool: pg.Pool,
  tmpDir: string,
): RulesRouterDeps {
  const repo = new InstanceRepository(pool);
  return {
    config,
    listInstances: (uid) => repo.listForStudy(uid),
    tmpDir,
    maxFileBytes: config.ingest.maxPartBytes,
  };
}
