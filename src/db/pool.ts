import { AsyncLocalStorage } from 'node:async_hooks';
import { mkdirSync } from 'node:fs';
import path from 'node:path';
import { Worker } from 'node:worker_threads';
import pg from 'pg';
import { ErrorCode, normalizeErrorString, RadScribeError } from '../errors.js';
import { childLogger } from '../logger.js';
import { workerScript } from '../runtime-paths.js';
import { applyWasmEngineFlags } from '../wasm-engine-flags.js';
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
  /** PostgreSQL only: the embedded PGlite is one session and always gets EMBEDDED_POOL_SIZE. */
  readonly poolSize?: number;
  readonly statementTimeoutMs?: number;
  /** Longest wait for a free connection (or a new one) before DatabaseUnavailableError 'checkout-timeout'. */
  readonly checkoutTimeoutMs?: number;
}

export const DEFAULT_POOL_SIZE = 4;
/** A runaway query must not hold a job lease forever (medplum `database.ts` sets this on connect). */
export const DEFAULT_STATEMENT_TIMEOUT_MS = 60_000;
/**
 * A request waits at most this long for a connection, then fails as database-unavailable (HTTP 503
 * with Retry-After, STOW 0xA700) instead of stalling: the client retries, nothing is half-stored.
 */
export const DEFAULT_CHECKOUT_TIMEOUT_MS = 15_000;
/**
 * PGlite is a single PostgreSQL session (pglite-session-gate.ts): more connections add only a second
 * queue behind the first, with no timeout of its own. One connection makes the pool's queue, with
 * its checkout timeout, the only one.
 */
export const EMBEDDED_POOL_SIZE = 1;

/** Why the database could not serve a request; every one is transient (retry later). */
export const DatabaseFailure = {
  /** No connection could be opened (refused, no socket, DNS, network). */
  Unreachable: 'unreachable',
  /** An open connection broke (server shut down, network cut, backend terminated). */
  ConnectionLost: 'connection-lost',
  /** Every connection stayed busy for checkoutTimeoutMs. */
  CheckoutTimeout: 'checkout-timeout',
} as const;
export type DatabaseFailure = (typeof DatabaseFailure)[keyof typeof DatabaseFailure];

/** The database cannot serve this now (code database-unavailable → 503 + Retry-After, STOW 0xA700). */
export class DatabaseUnavailableError extends RadScribeError {
  override name = 'DatabaseUnavailableError';
  readonly reason: DatabaseFailure;
  constructor(reason: DatabaseFailure, message: string, options?: { cause?: unknown }) {
    super(ErrorCode.DatabaseUnavailable, message, options);
    this.reason = reason;
  }
}

/**
 * Code that holds a connection asked the same pool for another one. On the embedded database (one
 * connection) that waits for itself forever: a bug in the caller, so code internal, failing at once
 * instead of stalling for the timeouts. Only the embedded pool is guarded: the guard needs
 * AsyncLocalStorage, whose promise hooks cost Node 20 measurable throughput on the PostgreSQL path,
 * where a nested checkout takes another connection (and deadlocks only once the pool is exhausted,
 * which the checkout timeout then turns into a 503).
 */
export class NestedCheckoutError extends RadScribeError {
  override name = 'NestedCheckoutError';
  constructor(where: string) {
    super(ErrorCode.Internal, `nested database checkout while holding a connection of ${where}: use the held client`);
  }
}

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
const CONNECTION_ERROR_TEXT =
  /^(Connection terminated|Query read timeout|Client has encountered a connection error|Client was closed|Connection ended)/;
/** pg-pool's text when connectionTimeoutMillis passed with no free connection. */
const CHECKOUT_TIMEOUT_TEXT = /^timeout exceeded when trying to connect/;

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
  if (CHECKOUT_TIMEOUT_TEXT.test(message))
    return new DatabaseUnavailableError(
      DatabaseFailure.CheckoutTimeout,
      'no database connection within the checkout timeout (all busy, or the server does not answer)',
      {
        cause: err,
      },
    );
  if (code && CONNECTION_ERROR_CODES.has(code))
    return new DatabaseUnavailableError(
      code === 'ECONNRESET' || code === 'EPIPE' ? DatabaseFailure.ConnectionLost : DatabaseFailure.Unreachable,
      `database connection failed: ${code}`,
      { cause: err },
    );
  if (CONNECTION_ERROR_TEXT.test(message))
    return new DatabaseUnavailableError(DatabaseFailure.ConnectionLost, `database connection failed: ${message}`, {
      cause: err,
    });
  return err;
}

/**
 * Connections the current async context holds, per pool, while withClient/withTransaction runs:
 * the nested-checkout guard reads it. `active` ends with the callback, so a timer the callback left
 * behind is not taken for a nested checkout later.
 */
interface Held {
  readonly pool: pg.Pool;
  active: boolean;
}
const heldConnections = new AsyncLocalStorage<readonly Held[]>();

function holds(pool: pg.Pool): boolean {
  return heldConnections.getStore()?.some((h) => h.pool === pool && h.active) ?? false;
}

/** Pools that refuse a nested checkout (embedded: a certain deadlock), and where each is. */
const strictPools = new WeakMap<pg.Pool, string>();

function makePool(
  config: pg.PoolConfig,
  statementTimeoutMs: number,
  checkoutTimeoutMs: number,
  strict: string | undefined,
): pg.Pool {
  // Sent as a startup parameter, so it holds before the first query on every connection.
  const timeout = Math.max(0, Math.trunc(statementTimeoutMs));
  // statement_timeout bounds work on the server; query_timeout (client side) also bounds a query that
  // never reaches it (a server that stopped answering), so a stuck query becomes a
  // database-unavailable error the job queue retries instead of a hang. connectionTimeoutMillis bounds
  // the wait for a connection: pg-pool applies it to a queued checkout as well as to a new connection.
  const pool = new pg.Pool({
    ...config,
    statement_timeout: timeout,
    query_timeout: timeout > 0 ? timeout + 5_000 : 0,
    connectionTimeoutMillis: Math.max(0, Math.trunc(checkoutTimeoutMs)),
  });
  // An idle client losing its server must not crash the process; the next query reports it.
  pool.on('error', (err) => log.warn('idle database connection failed', { error: normalizeErrorString(err) }));
  // pg-pool listens for 'error' only while a client is idle: a connection that breaks while checked
  // out (server stopped between two statements of a transaction) would emit 'error' with no listener
  // and end the process. This listener stays for the client's life; the broken client is not
  // queryable any more, so its next query fails (classified below) and release() destroys it.
  pool.on('connect', (client) => {
    client.on('error', (err) =>
      log.warn('database connection lost', {
        error: normalizeErrorString(err),
        code: (err as { code?: unknown }).code,
      }),
    );
  });
  if (strict) strictPools.set(pool, strict);
  // The promise forms of query() and connect() (the only ones used) classify connection failures.
  const query = pool.query.bind(pool) as (...args: unknown[]) => unknown;
  pool.query = ((...args: unknown[]) => guarded(pool) ?? classified(query(...args))) as typeof pool.query;
  const connect = pool.connect.bind(pool) as (...args: unknown[]) => unknown;
  pool.connect = ((...args: unknown[]) => guarded(pool) ?? classified(connect(...args))) as typeof pool.connect;
  return pool;
}

/** A rejected promise when this checkout would wait for a connection its own caller holds. */
function guarded(pool: pg.Pool): Promise<never> | undefined {
  const where = strictPools.get(pool);
  if (where === undefined || !holds(pool)) return undefined;
  return Promise.reject(new NestedCheckoutError(where));
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
    throw new DatabaseUnavailableError(
      DatabaseFailure.Unreachable,
      `connect to database ${where}: ${normalizeErrorString(err)}`,
      { cause: err },
    );
  }
}

export async function openDatabase(opts: OpenDatabaseOptions): Promise<Database> {
  const statementTimeoutMs = opts.statementTimeoutMs ?? DEFAULT_STATEMENT_TIMEOUT_MS;
  const checkoutTimeoutMs = opts.checkoutTimeoutMs ?? DEFAULT_CHECKOUT_TIMEOUT_MS;
  if (opts.url) {
    const poolSize = opts.poolSize ?? DEFAULT_POOL_SIZE;
    const where = redactDatabaseUrl(opts.url);
    const pool = makePool(
      { connectionString: opts.url, max: poolSize },
      statementTimeoutMs,
      checkoutTimeoutMs,
      undefined,
    );
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
  // The pool uses one connection; the spare lets the pool replace a broken one before the server has
  // noticed the old socket closed, and lets psql look in. pglite-socket drops connections beyond
  // maxConnections ("Connection terminated unexpectedly", js-stack.md §7); the session gate keeps
  // the two from interleaving.
  const poolSize = EMBEDDED_POOL_SIZE;
  const data: PgliteWorkerData = { dataDir: pgliteDir, maxConnections: poolSize + 1 };
  applyWasmEngineFlags();
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
  // One session, one connection: code inside withTransaction/withClient must use its own client;
  // asking the pool again is refused at once (NestedCheckoutError) rather than waiting for itself.
  const pool = makePool(
    { host: '127.0.0.1', port, user: 'postgres', database: 'postgres', max: poolSize },
    statementTimeoutMs,
    checkoutTimeoutMs,
    `embedded database ${pgliteDir}`,
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
  if (opts.poolSize !== undefined && opts.poolSize !== poolSize)
    log.info('embedded database uses one connection; database.poolSize applies to PostgreSQL', {
      poolSize: opts.poolSize,
    });
  log.info('embedded database started', { dataDir: pgliteDir, poolSize });
  return db;
}

/**
 * Run `fn` in one transaction on a client the caller holds and releases (migrate.ts keeps the session
 * of its advisory lock across transactions); ROLLBACK on any error. `onRollbackFailure` hears of a
 * ROLLBACK that failed: the connection is then unusable and must be destroyed, not reused.
 * The one place that writes BEGIN / COMMIT / ROLLBACK, except instance-store.ts (see there: its file
 * rule needs the row lock held across the file removal and keeps the file on an unknown COMMIT).
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

/**
 * Run `fn` holding one client of `pool`, released afterwards (destroyed when `fn` reports it broken
 * through `markBroken`). While `fn` runs, asking the same pool again is a nested checkout (above).
 */
export async function withClient<T>(
  pool: pg.Pool,
  fn: (client: pg.PoolClient, markBroken: (err: unknown) => void) => Promise<T>,
): Promise<T> {
  const client = await pool.connect();
  const held: Held = { pool, active: true };
  let broken: Error | undefined;
  const markBroken = (err: unknown): void => {
    broken = err instanceof Error ? err : new Error(normalizeErrorString(err));
  };
  try {
    if (!strictPools.has(pool)) return await fn(client, markBroken);
    return await heldConnections.run([...(heldConnections.getStore() ?? []), held], () => fn(client, markBroken));
  } finally {
    held.active = false;
    client.release(broken);
  }
}

/** Run `fn` in one transaction on one client; ROLLBACK on any error, and always release the client. */
export async function withTransaction<T>(pool: pg.Pool, fn: (client: pg.PoolClient) => Promise<T>): Promise<T> {
  // A failed ROLLBACK leaves the connection unusable; destroy it rather than return it to the pool.
  return withClient(pool, (client, markBroken) => inTransaction(client, fn, markBroken));
}
