import path from 'node:path';
import { migrate } from '../db/migrate.js';
import { openDatabase } from '../db/pool.js';
import { InstanceRepository } from '../ingest/instance-repository.js';
import { type RuleTestReport, renderRuleTest, testRulesOnFile, testRulesOnStudy } from '../pipeline/rule-tester.js';
import { type Args, type CliCommand, configFrom, flag, UsageError } from './args.js';

/**
 * `radscribe rules test --study <StudyInstanceUID>` / `radscribe rules test <file.dcm>`: which
 * routing rules (config `routes[]`) match, and why (issue 11; src/pipeline/rule-tester.ts). Every
 * rule is printed, matched or not, with each condition's actual values. `--calling-ae` and
 * `--called-ae` stand in for the association a file did not come with.
 * Exit 0 (a report), 1 the study is not held, 2 usage.
 */
async function cmdRules(args: Args): Promise<number> {
  if (args.positional[1] !== 'test') throw new UsageError('rules: expected "test"');
  const study = flag(args, 'study');
  const file = args.positional[2];
  if ((study === undefined) === (file === undefined))
    throw new UsageError('rules test: give --study <StudyInstanceUID> or one <file.dcm>');
  const cfg = configFrom(args);
  let report: RuleTestReport | null;
  if (file !== undefined) {
    const calling = flag(args, 'calling-ae');
    const called = flag(args, 'called-ae');
    report = await testRulesOnFile(cfg, path.resolve(file), {
      ...(calling ? { callingAeTitle: calling } : {}),
      ...(called ? { calledAeTitle: called } : {}),
    });
  } else {
    const db = await openDatabase({ url: cfg.database.url || undefined, dataDir: cfg.dataDir, poolSize: 2 });
    try {
      await migrate(db.pool);
      const repo = new InstanceRepository(db.pool);
      report = await testRulesOnStudy(cfg, (uid) => repo.listForStudy(uid), study as string);
    } finally {
      await db.close();
    }
    if (!report) {
      process.stderr.write(`no study ${study} is held\n`);
      return 1;
    }
  }
  process.stdout.write(args.flags.get('json') === true ? `${JSON.stringify(report)}\n` : renderRuleTest(report));
  return 0;
}

export const rulesCommand: CliCommand = {
  name: 'rules',
  usage: [
    'rules test --study <StudyInstanceUID> [--config FILE] [--json]   which routing rules match a received study, and why',
    'rules test <file.dcm> [--calling-ae AE] [--called-ae AE] [--config FILE] [--json]   the same for one DICOM file',
  ],
  run: cmdRules,
};
