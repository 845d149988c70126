import { migrate } from '../db/migrate.js';
import { openDatabase } from '../db/pool.js';
import { PgRemoteStudyTracker, RemoteStudyState } from '../ingest/remote-study-tracker.js';
import { childLogger } from '../logger.js';
import { type Args, type CliCommand, configFrom, flag, intFlag, operator, UsageError } from './args.js';
import { cmdRemoteFind, cmdRemoteMove } from './remote-qr.js';

/**
 * `radscribe remote`: what the QIDO poller saw and retrieved (remote_studies), and the operator's
 * way back for a study it gave up on (issue 9): `reopen` gives it a fresh attempt budget at the
 * next poll. The retrieve that follows is audited as usual, with `reopened` in its detail.
 */

const STATES: readonly string[] = Object.values(RemoteStudyState);

async function cmdRemote(args: Args): Promise<number> {
  const sub = args.positional[1];
  if (sub === 'find') return cmdRemoteFind(args);
  if (sub === 'move') return cmdRemoteMove(args);
  if (sub !== 'list' && sub !== 'reopen') throw new UsageError('remote: expected "list", "reopen", "find" or "move"');
  const state = flag(args, 'state');
  if (state !== undefined && !STATES.includes(state)) {
    throw new UsageError(`remote list: --state must be one of ${STATES.join(', ')}`);
  }
  const [node, study] = [args.positional[2], args.positional[3]];
  if (sub === 'reopen' && (!node || !study)) throw new UsageError('remote reopen: expected <node> <StudyInstanceUID>');
  const cfg = configFrom(args);
  const db = await openDatabase({ url: cfg.database.url || undefined, dataDir: cfg.dataDir, poolSize: 2 });
  try {
    await migrate(db.pool);
    const tracker = new PgRemoteStudyTracker(db.pool);
    if (sub === 'reopen') {
      const ok = await tracker.reopen(node as string, study as string);
      childLogger('cli').info('remote study reopened by an operator', {
        node,
        studyInstanceUid: study,
        operator: operator(),
        ok,
      });
      process.stdout.write(
        ok
          ? `reopened: ${node} ${study} is retrieved again at the next poll\n`
          : `not failed or given up: ${node} ${study}\n`,
      );
      return ok ? 0 : 1;
    }
    const rows = await tracker.list(state as RemoteStudyState | undefined, intFlag(args, 'limit', 100));
    if (args.flags.get('json') === true) {
      process.stdout.write(`${JSON.stringify(rows, null, 2)}\n`);
      return 0;
    }
    for (const r of rows) {
      process.stdout.write(
        `${r.remoteNode}\t${r.studyInstanceUid}\t${r.state}\tattempts=${r.attempts}\t${r.errorCode ?? ''}\t${
          r.failedInstances.length > 0 ? `failed=${r.failedInstances.length}` : ''
        }\n`,
      );
    }
    return 0;
  } finally {
    await db.close();
  }
}

export const remoteCommand: CliCommand = {
  name: 'remote',
  usage: [
    'remote list [--config FILE] [--state seen|retrieved|failed|given-up] [--limit N] [--json]   studies the QIDO poller saw',
    'remote reopen <node> <StudyInstanceUID> [--config FILE]   retry a failed or given-up study at the next poll',
    'remote find <node> [--study-date YYYYMMDD[-YYYYMMDD]] [--modality CT] [--study UID] [--limit N] [--json]   C-FIND (STUDY; SERIES with --study)',
    'remote move <node> <StudyInstanceUID> [--series UID ...] [--destination AET]   C-MOVE to our listening AE title',
  ],
  run: cmdRemote,
};
