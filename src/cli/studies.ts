import { migrate } from '../db/migrate.js';
import { openDatabase } from '../db/pool.js';
import { forceStudyComplete } from '../jobs/study-completion.js';
import { type Args, type CliCommand, configFrom, operator, UsageError } from './args.js';

/**
 * `radscribe studies force-complete <StudyInstanceUID>`: queue the study's describe job now, as
 * if its inactivity window had passed (issue 11 "Completeness": an operator forces it, CLI and
 * API; src/jobs/study-completion.ts). The gateway's worker picks the job up; audited as
 * 'study-queued' with the operator (`cli:<user>`) as actor, in the same transaction.
 * Exit 0 queued, 1 refused (unknown study, a job already queued or running, removed).
 */
async function cmdStudies(args: Args): Promise<number> {
  const sub = args.positional[1];
  const study = args.positional[2];
  if (sub !== 'force-complete') throw new UsageError('studies: expected "force-complete"');
  if (!study) throw new UsageError('studies force-complete: expected <StudyInstanceUID>');
  const cfg = configFrom(args);
  const db = await openDatabase({ url: cfg.database.url || undefined, dataDir: cfg.dataDir, poolSize: 2 });
  try {
    await migrate(db.pool);
    const done = await forceStudyComplete(db.pool, study, { actor: operator() });
    if (args.flags.get('json') === true)
      process.stdout.write(`${JSON.stringify({ studyInstanceUid: study, ...done })}\n`);
    else process.stdout.write(`queued: ${study} (job ${done.jobId}, was ${done.previousState})\n`);
    return 0;
  } finally {
    await db.close();
  }
}

export const studiesCommand: CliCommand = {
  name: 'studies',
  usage: [
    "studies force-complete <StudyInstanceUID> [--config FILE] [--json]   queue the study's describe job now (before its inactivity window)",
  ],
  booleanFlags: ['json'],
  run: cmdStudies,
};
