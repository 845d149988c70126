import { createHash, randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { migrate } from '../../src/db/migrate.js';
import { openDatabase } from '../../src/db/pool.js';

/**
 * A migrated database for one test file (STYLE §2.3, pg-boss `test/hooks.ts`).
 * - DATABASE_URL set (CI: postgresql://postgres@/radscribe_test?host=/var/run/postgresql): a fresh
 *   schema named from a hash of the test path plus a random suffix, search_path set on every pool
 *   connection; dropped by close() unless `keep` (pass keep=true from a failing test to inspect it,
 *   or set RADSCRIBE_KEEP_TEST_SCHEMA=1).
 * - Otherwise: an embedded PGlite in a temporary directory via openDatabase.
 */
export interface TestDatabase {
  readonly pool: pg.Pool;
  readonly embedded: boolean;
  /** The schema (PostgreSQL) or data directory (PGlite) backing this database. */
  readonly where: string;
  /** The data root given to openDatabase (PGlite only), for reopen tests. */
  readonly dataDir?: string;
  close(options?: { keep?: boolean }): Promise<void>;
}

export interface TestDatabaseOptions {
  readonly poolSize?: number;
  /** Skip running migrations (for migration tests). */
  readonly migrate?: boolean;
}

function testPath(): string {
  const state = (globalThis as { expect?: { getState?: () => { testPath?: string } } }).expect?.getState?.();
  return state?.testPath ?? 'unknown';
}

/**
 * RADSCRIBE_TEST_DB=pglite forces the embedded backend even when DATABASE_URL is set; CI uses it
 * (test/integration/pglite-backend.int.test.ts) to run the same suites on both backends in one run.
 */
export function backendName(): 'postgresql' | 'pglite' {
  if (process.env.RADSCRIBE_TEST_DB === 'pglite') return 'pglite';
  return process.env.DATABASE_URL ? 'postgresql' : 'pglite';
}

export async function testDatabase(options: TestDatabaseOptions = {}): Promise<TestDatabase> {
  const url = backendName() === 'postgresql' ? process.env.DATABASE_URL : undefined;
  const poolSize = options.poolSize ?? 5;
  if (url) {
    const hash = createHash('sha256').update(testPath()).digest('hex').slice(0, 10);
    const schema = `t_${hash}_${randomBytes(4).toString('hex')}`;
    const admin = new pg.Client({ connectionString: url });
    await admin.connect();
    try {
      await admin.query(`CREATE SCHEMA ${schema}`);
    } finally {
      await admin.end();
    }
    // search_path as a startup option: set on every pool connection before its first query.
    const pool = new pg.Pool({ connectionString: url, max: poolSize, options: `-c search_path=${schema}` });
    pool.on('error', () => undefined);
    if (options.migrate !== false) await migrate(pool);
    let closed: Promise<void> | undefined;
    return {
      pool,
      embedded: false,
      where: schema,
      close: (opts = {}) => {
        closed ??= (async () => {
          await pool.end();
          if (opts.keep || process.env.RADSCRIBE_KEEP_TEST_SCHEMA === '1') return;
          const c = new pg.Client({ connectionString: url });
          await c.connect();
          try {
            await c.query(`DROP SCHEMA ${schema} CASCADE`);
          } finally {
            await c.end();
          }
        })();
        return closed;
      },
    };
  }
  const dataDir = mkdtempSync(path.join(tmpdir(), 'radscribe-pglite-'));
  const db = await openDatabase({ dataDir, poolSize });
  if (options.migrate !== false) await migrate(db.pool);
  let closed: Promise<void> | undefined;
  return {
    pool: db.pool,
    embedded: true,
    where: dataDir,
    dataDir,
    close: (opts = {}) => {
      closed ??= (async () => {
        await db.close();
        if (!opts.keep) rmSync(dataDir, { recursive: true, force: true });
      })();
      return closed;
    },
  };
}
