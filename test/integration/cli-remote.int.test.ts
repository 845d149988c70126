import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { migrate } from '../../src/db/migrate.js';
import { openDatabase } from '../../src/db/pool.js';
import { ErrorCode } from '../../src/errors.js';
import { PgRemoteStudyTracker } from '../../src/ingest/remote-study-tracker.js';

/**
 * [REQ-ING-04] `radscribe remote list` / `remote reopen`: the operator sees the studies the poller
 * gave up on and gives one a fresh attempt budget (issue 9). bin/radscribe on the embedded database.
 */
const BIN = path.join(__dirname, '../../bin/radscribe');

function run(args: string[], dataDir: string) {
  const { DATABASE_URL: _omit, ...rest } = process.env;
  return spawnSync(BIN, args, { env: { ...rest, RADSCRIBE_DATA_DIR: dataDir }, encoding: 'utf8', timeout: 90_000 });
}

describe('radscribe remote', () => {
  let dataDir: string;
  beforeAll(async () => {
    dataDir = mkdtempSync(path.join(tmpdir(), 'rs-cli-remote-'));
    const db = await openDatabase({ dataDir, poolSize: 2 });
    try {
      await migrate(db.pool);
      const t = new PgRemoteStudyTracker(db.pool);
      await t.observe('main-pacs', '1.2.3.77', 3);
      await t.markFailed(
        'main-pacs',
        '1.2.3.77',
        ErrorCode.PacsRejected,
        'HTTP 403',
        { failedInstances: ['1.2.3.77.1'], remoteInstanceCount: 3 },
        { maxAttempts: 1, backoff: { initialMs: 10, maxMs: 10, factor: 1 } },
      );
      await t.observe('main-pacs', '1.2.3.78', 1);
      await t.markRetrieved('main-pacs', '1.2.3.78', 1);
    } finally {
      await db.close();
    }
  });
  afterAll(() => rmSync(dataDir, { recursive: true, force: true }));

  it('lists given-up studies, reopens one once, and refuses bad usage with exit code 2', () => {
    const list = run(['remote', 'list', '--state', 'given-up', '--json'], dataDir);
    expect(list.stderr).not.toMatch(/radscribe: /);
    expect(list.status).toBe(0);
    const rows = JSON.parse(list.stdout) as Array<{
      studyInstanceUid: string;
      state: string;
      failedInstances: string[];
    }>;
    expect(rows.map((r) => [r.studyInstanceUid, r.state, r.failedInstances])).toEqual([
      ['1.2.3.77', 'given-up', ['1.2.3.77.1']],
    ]);
    const reopen = run(['remote', 'reopen', 'main-pacs', '1.2.3.77'], dataDir);
    expect(reopen.status).toBe(0);
    expect(reopen.stdout).toContain('reopened');
    // A retrieved study has nothing to reopen.
    expect(run(['remote', 'reopen', 'main-pacs', '1.2.3.78'], dataDir).status).toBe(1);
    const all = JSON.parse(run(['remote', 'list', '--json'], dataDir).stdout) as Array<{ state: string }>;
    expect(all.map((r) => r.state).sort()).toEqual(['retrieved', 'seen']);
    expect(run(['remote', 'list', '--state', 'gone'], dataDir).status).toBe(2);
    expect(run(['remote', 'reopen', 'main-pacs'], dataDir).status).toBe(2);
  });
});
