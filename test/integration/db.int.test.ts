import { appendFileSync, cpSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { MigrationError, migrate, readMigrations } from '../../src/db/migrate.js';
import { openDatabase, redactDatabaseUrl } from '../../src/db/pool.js';
import { MIGRATIONS_DIR } from '../../src/runtime-paths.js';
import { backendName, testDatabase } from '../support/db.js';

jest.setTimeout(60_000);

// [REQ-DB-01] forward-only migrations under an advisory lock, on PostgreSQL and PGlite.
describe(`migrations (${backendName()})`, () => {
  const versions = readMigrations().map((m) => m.version);

  it('applies every migration once; a second run applies nothing', async () => {
    const db = await testDatabase({ migrate: false });
    try {
      expect(versions.length).toBeGreaterThanOrEqual(2);
      expect((await migrate(db.pool)).applied).toEqual(versions);
      expect((await migrate(db.pool)).applied).toEqual([]);
      const { rows } = await db.pool.query<{ version: string; sha256: string }>(
        'SELECT version, sha256 FROM schema_migrations ORDER BY version',
      );
      expect(rows.map((r) => r.version)).toEqual(versions);
      expect(rows.map((r) => r.sha256)).toEqual(readMigrations().map((m) => m.sha256));
    } finally {
      await db.close();
    }
  });

  it('two concurrent migrate() calls apply each migration exactly once', async () => {
    const db = await testDatabase({ migrate: false });
    try {
      const [a, b] = await Promise.all([migrate(db.pool), migrate(db.pool)]);
      expect([...a.applied, ...b.applied].sort()).toEqual(versions);
      const { rows } = await db.pool.query<{ n: number }>('SELECT count(*)::int AS n FROM schema_migrations');
      expect(rows[0]?.n).toBe(versions.length);
    } finally {
      await db.close();
    }
  });

  it('refuses to start when an applied migration was edited', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'radscribe-mig-'));
    cpSync(MIGRATIONS_DIR, dir, { recursive: true });
    const db = await testDatabase({ migrate: false });
    try {
      await migrate(db.pool, dir);
      appendFileSync(path.join(dir, '0001_init.sql'), '\n-- edited after release\n');
      const err = await migrate(db.pool, dir).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(MigrationError);
      expect((err as MigrationError).version).toBe('0001');
      expect((err as MigrationError).code).toBe('config-invalid');
    } finally {
      await db.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('rejects a malformed migration file name', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'radscribe-mig-'));
    writeFileSync(path.join(dir, '1_bad.sql'), 'SELECT 1;');
    try {
      expect(() => readMigrations(dir)).toThrow(MigrationError);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('the claim query uses the claim index rather than scanning jobs', async () => {
    const db = await testDatabase();
    const client = await db.pool.connect();
    try {
      const { CLAIM_NEXT_JOB } = await import('../../src/jobs/queries.js');
      await client.query('BEGIN');
      // Tiny tables make a seq scan cheapest; disable it to see which index the planner can use.
      await client.query('SET LOCAL enable_seqscan = off');
      const { rows } = await client.query<{ 'QUERY PLAN': unknown }>(
        `EXPLAIN (FORMAT JSON) ${CLAIM_NEXT_JOB.replace('$1', "'w'").replace('$2', '1000')}`,
      );
      const plan = JSON.stringify(rows[0]?.['QUERY PLAN']);
      expect(plan).toContain('jobs_claim_idx');
      await client.query('ROLLBACK');
    } finally {
      client.release();
      await db.close();
    }
  });
  it('the stability sweep reads the settling index rather than scanning studies', async () => {
    const db = await testDatabase();
    const client = await db.pool.connect();
    try {
      const { SELECT_SETTLED_STUDIES } = await import('../../src/ingest/study-lifecycle.js');
      await client.query('BEGIN');
      await client.query('SET LOCAL enable_seqscan = off');
      const { rows } = await client.query<{ 'QUERY PLAN': unknown }>(
        `EXPLAIN (FORMAT JSON) ${SELECT_SETTLED_STUDIES.replace('$1', '30000').replace('$2', '100')}`,
      );
      expect(JSON.stringify(rows[0]?.['QUERY PLAN'])).toContain('studies_settling_idx');
      await client.query('ROLLBACK');
    } finally {
      client.release();
      await db.close();
    }
  });
});

describe('openDatabase', () => {
  it('redacts passwords from connection URLs', () => {
    expect(redactDatabaseUrl('postgresql://app:s3cret@db.example:5432/radscribe')).toBe(
      'postgresql://app:***@db.example:5432/radscribe',
    );
    expect(redactDatabaseUrl('postgresql://postgres@/radscribe_test?host=/var/run/postgresql')).toBe(
      'postgresql://postgres@/radscribe_test?host=/var/run/postgresql',
    );
  });

  it('embedded PGlite keeps its data across close and reopen', async () => {
    const dataDir = mkdtempSync(path.join(tmpdir(), 'radscribe-reopen-'));
    try {
      const first = await openDatabase({ dataDir, poolSize: 2 });
      expect(first.embedded).toBe(true);
      expect(first.describe()).toContain(path.join(dataDir, 'pglite'));
      await migrate(first.pool);
      await first.pool.query("INSERT INTO studies (study_instance_uid) VALUES ('1.2.3.4')");
      await first.close();
      await first.close(); // idempotent

      const second = await openDatabase({ dataDir, poolSize: 2 });
      try {
        expect((await migrate(second.pool)).applied).toEqual([]);
        const { rows } = await second.pool.query<{ state: string }>(
          "SELECT state FROM studies WHERE study_instance_uid = '1.2.3.4'",
        );
        expect(rows).toEqual([{ state: 'receiving' }]);
      } finally {
        await second.close();
      }
    } finally {
      rmSync(dataDir, { recursive: true, force: true });
    }
  });

  const url = process.env.DATABASE_URL;
  (url ? it : it.skip)('connects to an external PostgreSQL with a statement timeout', async () => {
    const db = await openDatabase({ url: url as string, dataDir: tmpdir(), poolSize: 2, statementTimeoutMs: 1234 });
    try {
      expect(db.embedded).toBe(false);
      const { rows } = await db.pool.query<{ statement_timeout: string }>('SHOW statement_timeout');
      expect(rows[0]?.statement_timeout).toBe('1234ms');
    } finally {
      await db.close();
      await db.close();
    }
  });

  it('an unreachable server is a typed database-unavailable error', async () => {
    const err = await openDatabase({
      url: 'postgresql://postgres@127.0.0.1:1/none',
      dataDir: tmpdir(),
    }).catch((e: unknown) => e);
    expect((err as { code?: string }).code).toBe('database-unavailable');
  });
});
