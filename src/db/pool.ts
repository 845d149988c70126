import { mkdirSync } from 'node:fs';
import path from 'node:path';
import { Worker } from 'node:worker_threads';
import pg from 'pg';
import { ErrorCode, normalizeErrorString, RadScribeError } from '../errors.js';
import { childLogger } from '../logger.js';
import { workerScript } from '../runtime-paths.js';
import type { PgliteWorkerData, PgliteWorkerMessage } from './pglite-worker.js';

/**
 * The one owner of the database connection (STYLE rule 11). Either an external PostgreSQL (a URL)
 * or an embedded PGlite served over pglite-socket from a worker thread (pglite-worker.ts), so both paths use the same `pg.Pool` and the same
 * SQL (reference/js-stack.md §7).
 */

/** Anything that can run a query: the pool, or a client inside a transaction. */
export type Queryable = pg.Pool | pg.PoolClient;

export interface Database {
  readonly pool: pg.Pool;
  /** True when this process runs its own PGlite. */
  readonly embedded: boolean;
  /** Where we are connected, for logs and `radscribe status`; never contains a password. */
  describe(): string;
  /** Ends the pool, then (embedded) stops the socket server and closes PGlite. Idempotent. */
  close(): Promise<void>;
}

export interface OpenDatabaseOptions {
  /** postgresql:// URL; when absent, an embedded PGlite under `<dataDir>/pglite` is used. */
  readonly url?: string;
  /** Data root; the embedded database lives in `<dataDir>/pglite` and survives restarts. */
  readonly dataDir: string;
  readonly poolSize?: number;
  readonly statementTimeoutMs?: number;
}

export const DEFAULT_POOL_SIZE = 4;
/** A runaway query must not hold a job lease forever (medplum `database.ts` sets this on connect). */
export const DEFAULT_STATEMENT_TIMEOUT_MS = 60_000;

const log = childLogger('db');

/** Strip the password from a connection URL (`postgresql://user:secret@host/db` → `user:***@`). */
export function redactDatabaseUrl(url: string): string {
  return url.replace(/^([a-z][a-z0-9+.-]*:\/\/[^:/@?]*):[^@/?]*@/i, '$1:***@');
}

/** Socket-level failures reaching the server: no SQLSTATE, so errors.ts cannot tell whose they are. */
const CONNECTION_ERROR_CODES: ReadonlySet<string> = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'ETIMEDOUT',
  'EPIPE',
  'ENOTFOUND',
  'EAI_AGAIN',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'ENOENT', // a Unix-domain socket path with no server behind it
]);
/** node-postgres' own texts for a lost connection and for its client-side query_timeout. */
const CONNECTION_ERROR_TEXT = /^(Connection terminated|Query read timeout|timeout exceeded when trying to connect)/;

/**
 * Classifies an error from the pool at its origin (STYLE rule 2): a network failure of the database
 * connection is database-unavailable (retried). Server errors (they carry an SQLSTATE and a
 * severity) and everything else pass through unchanged; errors.ts `errorCodeOf` reads SQLSTATEs.
 */
export function classifyDatabaseError(err: unknown): unknown {
  if (err instanceof RadScribeError) return err;
  const e = err as { code?: unknown; severity?: unknown } | null;
  if (typeof e?.severity === 'string') return err;
  const code = typeof e?.code === 'string' ? e.code : undefined;
  const message = err instanceof Error ? err.message : '';
  if ((code && CONNECTION_ERROR_CODES.has(code)) || CONNECTION_ERROR_TEXT.test(message))
    return new RadScribeError(ErrorCode.DatabaseUnavailable, `database connection failed: ${code ?? message}`, {
      cause: err,
    });
  return err;
}

function makePool(config: pg.PoolConfig, statementTimeoutMs: number): pg.Pool {
  // Sent as a startup parameter, so it holds before the first query on every connection.
  const timeout = Math.max(0, Math.trunc(statementTimeoutMs));
  // statement_timeout bounds work on the server; query_timeout (client side) also bounds a query that
  // never reaches it, e.g. one queued behind another connection's open transaction in pglite-socket,
  // so a stuck query becomes a database-unavailable error the job queue retries instead of a hang.
  const pool = new pg.Pool({ ...config, statement_timeout: timeout, query_timeout: timeout > 0 ? timeout + 5_000 : 0 });
  // An idle client losing its server must not crash the process; the next query reports it.
  pool.on('error', (err) => log.warn('idle database connection failed', { error: normalizeErrorString(err) }));
  // The promise forms of query() and connect() (the only ones used) classify connection failures.
  const query = pool.query.bind(pool) as (...args: unknown[]) => unknown;
  pool.query = ((...args: unknown[]) => classified(query(...args))) as typeof pool.query;
  const connect = pool.connect.bind(pool) as (...args: unknown[]) => unknown;
  pool.connect = ((...args: unknown[]) => classified(connect(...args))) as typeof pool.connect;
  return pool;
}

function classified(r: unknown): unknown {
  return r instanceof Promise
    ? r.catch((err: unknown) => {
        throw classifyDatabaseError(err);
      })
    : r;
}

async function ping(pool: pg.Pool, where: string): Promise<void> {
  try {
    await pool.query('SELECT 1');
  } catch (err: unknown) {
    throw new RadScribeError(
      ErrorCode.DatabaseUnavailable,
      `connect to database ${where}: ${normalizeErrorString(err)}`,
      { cause: err },
    );
  }
}

export async function openDatabase(opts: OpenDatabaseOptions): Promise<Database> {
  const poolSize = opts.poolSize ?? DEFAULT_POOL_SIZE;
  const statementTimeoutMs = opts.statementTimeoutMs ?? DEFAULT_STATEMENT_TIMEOUT_MS;
  if (opts.url) {
    const where = redactDatabaseUrl(opts.url);
    const pool = makePool({ connectionString: opts.url, max: poolSize }, statementTimeoutMs);
    let closed: Promise<void> | undefined;
    const db: Database = {
      pool,
      embedded: false,
      describe: () => `postgresql ${where}`,
      close: () => {
        closed ??= pool.end();
        return closed;
      },
    };
    try {
      await ping(pool, where);
    } catch (err) {
      await db.close();
      throw err;
    }
    log.info('database connected', { database: where, poolSize });
    return db;
  }

  const pgliteDir = path.join(opts.dataDir, 'pglite');
  mkdirSync(pgliteDir, { recursive: true });
  // pglite-socket defaults to one connection and drops the rest ("Connection terminated
  // unexpectedly", js-stack.md §7), so allow the pool plus one spare for psql/debugging.
  const data: PgliteWorkerData = { dataDir: pgliteDir, maxConnections: poolSize + 1 };
  const worker = new Worker(workerScript('db/pglite-worker'), { workerData: data });
  const next = (): Promise<PgliteWorkerMessage> =>
    new Promise((resolve, reject) => {
      const onMessage = (m: PgliteWorkerMessage): void => {
        worker.off('error', onError);
        worker.off('exit', onExit);
        resolve(m);
      };
      const onError = (err: Error): void => {
        worker.off('message', onMessage);
        worker.off('exit', onExit);
        reject(err);
      };
      const onExit = (code: number): void => {
        worker.off('message', onMessage);
        worker.off('error', onError);
        reject(new Error(`embedded database worker exited with code ${code}`));
      };
      worker.once('message', onMessage);
      worker.once('error', onError);
      worker.once('exit', onExit);
    });
  let port: number;
  try {
    const m = await next();
    if (m.type !== 'ready') throw new Error(m.type === 'error' ? m.message : 'unexpected message');
    port = m.port;
  } catch (err: unknown) {
    await worker.terminate();
    throw new RadScribeError(
      ErrorCode.DatabaseUnavailable,
      `open embedded database at ${pgliteDir}: ${normalizeErrorString(err)}`,
      {
        cause: err,
      },
    );
  }
  const conn = `127.0.0.1:${port}`;
  // PGlite is a single session; pglite-socket keeps a transaction on the connection that opened it,
  // so code inside withTransaction must only use its own client (never the pool) or it deadlocks.
  const pool = makePool(
    { host: '127.0.0.1', port, user: 'postgres', database: 'postgres', max: poolSize },
    statementTimeoutMs,
  );
  let closed: Promise<void> | undefined;
  const db: Database = {
    pool,
    embedded: true,
    describe: () => `pglite ${pgliteDir} via ${conn}`,
    close: () => {
      closed ??= (async () => {
        await pool.end().catch(() => undefined);
        // Let PGlite stop cleanly (flushes its data directory), then end the thread.
        const done = next().catch(() => undefined);
        worker.postMessage('close');
        await Promise.race([done, new Promise((r) => setTimeout(r, 10_000).unref())]);
        await worker.terminate();
      })();
      return closed;
    },
  };
  try {
    await ping(pool, db.describe());
    // PGlite is one session shared by every socket connection and may ignore startup parameters:
    // set the timeout once, for all of them.
    await pool.query(`SET statement_timeout = ${Math.max(0, Math.trunc(statementTimeoutMs))}`);
  } catch (err) {
    await db.close();
    throw err;
  }
  log.info('embedded database started', { dataDir: pgliteDir, poolSize });
  return db;
}

/**
 * Run `fn` in one transaction on a client the caller holds and releases (migrate.ts keeps the session
 * of its advisory lock across transactions); ROLLBACK on any error. `onRollbackFailure` hears of a
 * ROLLBACK that failed: the connection is then unusable and must be destroyed, not reused.
 * The one place that writes BEGIN / COMMIT / ROLLBACK.
 */
export async function inTransaction<T>(
  client: pg.PoolClient,
  fn: (client: pg.PoolClient) => Promise<T>,
  onRollbackFailure?: (rollbackErr: unknown) => void,
): Promise<T> {
  try {
    await client.query('BEGIN');
    const out = await fn(client);
    await client.query('COMMIT');
    return out;
  } catch (err) {
    try {
      await client.query('ROLLBACK');
    } catch (rollbackErr: unknown) {
      onRollbackFailure?.(rollbackErr);
    }
    throw classifyDatabaseError(err);
  }
}

/** Run `fn` in one transaction on one client; ROLLBACK on any error, and always release the client. */
export async function withTransaction<T>(pool: pg.Pool, fn: (client: pg.PoolClient) => Promise<T>): Promise<T> {
  const client = await pool.connect();
  let broken: unknown;
  try {
    return await inTransaction(client, fn, (rollbackErr) => {
      // The connection is unusable; destroy it rather than return it to the pool.
      broken = rollbackErr;
    });
  } finally {
    client.release(broken instanceof Error ? broken : undefined);
  }
}
