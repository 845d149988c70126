import { execFileSync, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { copyFileSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir, userInfo } from 'node:os';
import path from 'node:path';
import { migrate } from '../../src/db/migrate.js';
import { openDatabase } from '../../src/db/pool.js';
import { InstanceStore } from '../../src/ingest/instance-store.js';
import { studyClaimed, studyExported, studyQueued } from '../../src/ingest/study-lifecycle.js';
import { FIXTURES_DIR } from '../../src/runtime-paths.js';

/**
 * [REQ-RET-02] `radscribe retention --dry-run` prints what would be removed and changes nothing;
 * `radscribe retention` removes it, audited with the operator as actor (issue 9). The executable
 * from the checkout (bin/radscribe → dist), on an embedded PostgreSQL in a fresh data directory that
 * the test fills first through the instance store and the study lifecycle.
 */
jest.setTimeout(120_000);

const BIN = path.join(__dirname, '../../bin/radscribe');
const CR = path.join(FIXTURES_DIR, 'dicom', 'CR_16x16_6154.dcm');
const OLD = '1.2.826.0.1.3680043.10.1403.77.1';
const YOUNG = '1.2.826.0.1.3680043.10.1403.77.2';

let dataDir: string;
let config: string;
const stored: Record<string, string> = {};

function run(args: string[], env: Record<string, string> = {}) {
  const { DATABASE_URL: _omit, ...rest } = process.env;
  return spawnSync(BIN, args, {
    env: { ...rest, RADSCRIBE_DATA_DIR: dataDir, RADSCRIBE_LOG_LEVEL: 'error', ...env },
    encoding: 'utf8',
    timeout: 90_000,
  });
}

beforeAll(async () => {
  dataDir = mkdtempSync(path.join(tmpdir(), 'rs-cli-retention-'));
  config = path.join(dataDir, 'radscribe.yaml');
  writeFileSync(
    config,
    [
      'retention:',
      '  rules:',
      '    - name: stow-uploads',
      '      via: stow-rs',
      '      exportedAfterDays: 14',
      '',
    ].join('\n'),
  );
  const db = await openDatabase({ dataDir, poolSize: 2 });
  try {
    await migrate(db.pool);
    const store = new InstanceStore({ pool: db.pool, storageDir: path.join(dataDir, 'instances') });
    for (const [study, days] of [
      [OLD, 20],
      [YOUNG, 1],
    ] as const) {
      const p = path.join(dataDir, `${days}.dcm`);
      copyFileSync(CR, p);
      execFileSync('dcmodify', ['-nb', '-m', `(0020,000D)=${study}`, '-m', `(0008,0018)=${study}.1.1`, p]);
      const bytes = readFileSync(p);
      const out = await store.accept(
        { path: p, sizeBytes: bytes.byteLength, sha256: createHash('sha256').update(bytes).digest('hex') },
        { via: 'stow-rs', actor: 'modality' },
      );
      if (out.status !== 'stored') throw new Error('fixture not stored');
      stored[study] = out.storedPath;
      await studyQueued(db.pool, study);
      await studyClaimed(db.pool, study);
      await studyExported(db.pool, study);
      await db.pool.query(
        `UPDATE studies SET updated_at = now() - $2 * interval '1 day' WHERE study_instance_uid = $1`,
        [study, days],
      );
    }
  } finally {
    await db.close();
  }
});
afterAll(() => rmSync(dataDir, { recursive: true, force: true }));

describe('radscribe retention', () => {
  it('without rules says so and removes nothing', () => {
    const r = run(['retention', '--dry-run']);
    expect(r.stderr).not.toMatch(/radscribe: /);
    expect(r.status).toBe(0);
    expect(r.stdout).toContain('no retention rules configured');
  });

  it('--dry-run prints what would be removed and changes nothing', () => {
    const r = run(['retention', '--dry-run', '--config', config]);
    expect(r.stderr).not.toMatch(/radscribe: /);
    expect(r.status).toBe(0);
    expect(r.stdout).toMatch(
      new RegExp(
        `^would remove\\s+${OLD.replace(/\./g, '\\.')}  rule=stow-uploads state=exported .* instances=1 bytes=\\d+$`,
        'm',
      ),
    );
    // Exported one day ago: younger than any rule's age, so not even a candidate.
    expect(r.stdout).not.toContain(YOUNG);
    expect(r.stdout).toMatch(/^dry run: would remove 1 study \(1 instances, \d+ bytes\), 0 kept$/m);
    expect(existsSync(stored[OLD] as string)).toBe(true);
    const json = run(['retention', '--dry-run', '--json', '--config', config]);
    const report = JSON.parse(json.stdout) as { dryRun: boolean; removed: { studyInstanceUid: string }[] };
    expect(report.dryRun).toBe(true);
    expect(report.removed.map((s) => s.studyInstanceUid)).toEqual([OLD]);
    expect(existsSync(stored[OLD] as string)).toBe(true);
  });

  it('without --dry-run removes it, audited as study-deleted by the operator; the chain verifies', () => {
    const r = run(['retention', '--config', config]);
    expect(r.stderr).not.toMatch(/radscribe: /);
    expect(r.status).toBe(0);
    expect(r.stdout).toMatch(new RegExp(`^removed\\s+${OLD.replace(/\./g, '\\.')}  rule=stow-uploads`, 'm'));
    expect(existsSync(stored[OLD] as string)).toBe(false);
    expect(existsSync(stored[YOUNG] as string)).toBe(true);

    const list = run(['audit', 'list', '--kind', 'study-deleted', '--json']);
    expect(list.status).toBe(0);
    const events = JSON.parse(list.stdout) as {
      kind: string;
      actor: string;
      studyInstanceUid: string;
      eventId: string;
    }[];
    expect(events).toEqual([
      expect.objectContaining({
        kind: 'study-deleted',
        eventId: '110105',
        actor: `cli:${userInfo().username}`,
        studyInstanceUid: OLD,
      }),
    ]);
    const verify = run(['audit', 'verify']);
    expect(verify.status).toBe(0);
    // A second run has nothing left to do.
    expect(run(['retention', '--config', config]).stdout).toMatch(
      /^removed 0 studies \(0 instances, 0 bytes\), 0 kept$/m,
    );
  });

  it('a bad rule is a configuration error with its path (exit 2)', () => {
    const bad = path.join(dataDir, 'bad.yaml');
    writeFileSync(bad, 'retention:\n  rules:\n    - name: x\n      via: fax\n      exportedAfterDays: -1\n');
    const r = run(['retention', '--dry-run', '--config', bad]);
    expect(r.status).toBe(2);
    expect(r.stderr).toContain('retention.rules[0].via: must be one of');
    expect(r.stderr).toContain('retention.rules[0].exportedAfterDays: must be a number from 0');
  });
});
