import path from 'node:path';
import { migrate } from '../db/migrate.js';
import { openDatabase } from '../db/pool.js';
import { type RetentionReport, runRetention } from '../ingest/retention.js';
import { type Args, boolFlag, type CliCommand, configFrom, intFlag, operator } from './args.js';

/**
 * `radscribe retention [--dry-run]`: one retention pass now, with the configured rules (issue 9).
 * The dry run prints what would be removed and changes nothing; a real run removes it, audited as
 * 'study-deleted' with the operator as actor. Exit 0 also when nothing matched; 1 when a study could
 * not be removed (its files or rows stayed as they were).
 */
async function cmdRetention(args: Args): Promise<number> {
  const cfg = configFrom(args);
  const dryRun = boolFlag(args, 'dry-run');
  const db = await openDatabase({ url: cfg.database.url || undefined, dataDir: cfg.dataDir, poolSize: 2 });
  try {
    await migrate(db.pool);
    if (cfg.retention.rules.length === 0) {
      process.stdout.write('no retention rules configured (retention.rules): nothing is removed\n');
      return 0;
    }
    const report = await runRetention({
      pool: db.pool,
      rules: cfg.retention.rules,
      storageDir: path.join(cfg.dataDir, 'instances'),
      dryRun,
      actor: operator(),
      maxStudies: intFlag(args, 'limit', 10_000),
    });
    if (args.flags.get('json') === true) process.stdout.write(`${JSON.stringify(report, null, 2)}\n`);
    else process.stdout.write(formatRetentionReport(report));
    return report.kept.some((k) => k.reason === 'delete-failed') ? 1 : 0;
  } finally {
    await db.close();
  }
}

/** One line per study, then the totals. UIDs and counts only (no PHI). */
export function formatRetentionReport(r: RetentionReport): string {
  const verb = r.dryRun ? 'would remove' : 'removed';
  const lines = r.removed.map(
    (s) =>
      `${verb.padEnd(12)}  ${s.studyInstanceUid}  rule=${s.rule} state=${s.state} since=${s.since.toISOString()} instances=${s.instances} bytes=${s.bytes}`,
  );
  for (const k of r.kept)
    lines.push(
      `${'kept'.padEnd(12)}  ${k.studyInstanceUid}  reason=${k.reason}${k.rule ? ` rule=${k.rule}` : ''} state=${k.state}`,
    );
  const instances = r.removed.reduce((n, s) => n + s.instances, 0);
  const bytes = r.removed.reduce((n, s) => n + s.bytes, 0);
  const studies = `${r.removed.length} stud${r.removed.length === 1 ? 'y' : 'ies'}`;
  lines.push(
    `${r.dryRun ? 'dry run: would remove' : 'removed'} ${studies} (${instances} instances, ${bytes} bytes), ${r.kept.length} kept${r.truncated ? '; stopped at --limit, run again for the rest' : ''}`,
  );
  return `${lines.join('\n')}\n`;
}

export const retentionCommand: CliCommand = {
  name: 'retention',
  usage: [
    'retention [--config FILE] [--dry-run] [--limit N] [--json]   apply retention.rules now (--dry-run: print what would be removed)',
  ],
  booleanFlags: ['dry-run'],
  run: cmdRetention,
};
