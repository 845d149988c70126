import { createHash } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import type pg from 'pg';
import { ErrorCode, RadScribeError } from '../errors.js';
import { childLogger } from '../logger.js';
import { MIGRATIONS_DIR } from '../runtime-paths.js';
import { inTransaction } from './pool.js';

/**
 * Forward-only migrations (STYLE §2.7, rule 7): `migrations/NNNN_name.sql`, applied in order, each
 * in its own transaction, recorded with its sha256 in `schema_migrations`.
 */

/** Fixed advisory lock key ('RSMG'): two processes starting together migrate one after the other. */
export const MIGRATION_LOCK_KEY = 1381190983;

const FILE_RE = /^(\d{4})_([a-z0-9_]+)\.sql$/;

export interface MigrationFile {
  readonly version: string;
  readonly name: string;
  readonly sha256: string;
  readonly sql: string;
}

/** A migration already applied was edited afterwards, or the directory is malformed: refuse to start. */
export class MigrationError extends RadScribeError {
  override name = 'MigrationError';
  readonly version: string | undefined;
  constructor(message: string, version?: string) {
    super(ErrorCode.ConfigInvalid, message);
    this.version = version;
  }
}

export function readMigrations(dir: string = MIGRATIONS_DIR): MigrationFile[] {
  const out: MigrationFile[] = [];
  for (const file of readdirSync(dir).sort()) {
    if (!file.endsWith('.sql')) continue;
    const m = FILE_RE.exec(file);
    if (!m) throw new MigrationError(`migration file name ${file} does not match NNNN_name.sql`);
    const sql = readFileSync(path.join(dir, file), 'utf8');
    const version = m[1] as string;
    if (out.some((x) => x.version === version))
      throw new MigrationError(`duplicate migration version ${version}`, version);
    out.push({ version, name: m[2] as string, sha256: createHash('sha256').update(sql).digest('hex'), sql });
  }
  return out;
}

const CREATE_TABLE = `CREATE TABLE IF NOT EXISTS schema_migrations (
  version text PRIMARY KEY,
  name text NOT NULL,
  sha256 text NOT NULL,
  applied_at timestamptz NOT NULL DEFAULT now()
)`;

/** Apply pending migrations; returns the versions applied by this call (empty when up to date). */
export async function migrate(pool: pg.Pool, dir: string = MIGRATIONS_DIR): Promise<{ applied: string[] }> {
  const log = childLogger('migrate');
  const files = readMigrations(dir);
  const applied: string[] = [];
  const lockClient = await pool.connect();
  try {
    // Session-level lock for the whole run (medplum database.ts). On PGlite every connection is the
    // same session, so the lock is re-entrant there; the per-migration re-check below covers that
    // case, because the session gate (pglite-session-gate.ts) runs one transaction at a time.
    await lockClient.query('SELECT pg_advisory_lock($1)', [MIGRATION_LOCK_KEY]);
    await lockClient.query(CREATE_TABLE);
    for (const file of files) {
      // Same client as the lock, so a pool of one connection cannot deadlock against itself.
      const did = await inTransaction(lockClient, async (client) => {
        await client.query('SELECT pg_advisory_xact_lock($1)', [MIGRATION_LOCK_KEY + 1]);
        const { rows } = await client.query<{ sha256: string }>(
          'SELECT sha256 FROM schema_migrations WHERE version = $1',
          [file.version],
        );
        const prior = rows[0];
        if (prior) {
          if (prior.sha256 !== file.sha256) {
            throw new MigrationError(
              `migration ${file.version}_${file.name} was changed after it was applied (sha256 ${prior.sha256} → ${file.sha256}); migrations are forward-only`,
              file.version,
            );
          }
          return false;
        }
        const started = Date.now();
        await client.query(file.sql);
        await client.query('INSERT INTO schema_migrations (version, name, sha256) VALUES ($1, $2, $3)', [
          file.version,
          file.name,
          file.sha256,
        ]);
        log.info('migration applied', { version: file.version, name: file.name, durationMs: Date.now() - started });
        return true;
      });
      if (did) applied.push(file.version);
    }
    // A row whose file disappeared means this build is older than the database.
    const { rows } = await lockClient.query<{ version: string }>(
      'SELECT version FROM schema_migrations ORDER BY version',
    );
    const known = new Set(files.map((f) => f.version));
    const unknown = rows.filter((r) => !known.has(r.version)).map((r) => r.version);
    if (unknown.length > 0) {
      throw new MigrationError(`database has migrations this build does not know: ${unknown.join(', ')}`, unknown[0]);
    }
  } finally {
    await lockClient.query('SELECT pg_advisory_unlock($1)', [MIGRATION_LOCK_KEY]).catch(() => undefined);
    lockClient.release();
  }
  return { applied };
}
