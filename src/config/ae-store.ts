import type pg from 'pg';
import { AuditEventKind } from '../audit/audit-codes.js';
import { recordAudit } from '../audit/audit-log.js';
import type { RadScribeConfig, RemoteNodeConfig } from '../config.js';
import { type Queryable, withTransaction } from '../db/pool.js';
import type { DimseListenerConfig } from '../dimse/storage-scp.js';
import { ErrorCode, RadScribeError } from '../errors.js';

/**
 * Local AE titles and remote nodes in PostgreSQL (migration 0022; issue 11, issue 13 admin API).
 *
 * How the YAML file and the database combine (README "Local AEs and remote nodes"):
 * - At each start the file's `dimse.listeners[]` and `remoteNodes[]` are synchronised into the
 *   tables (syncFromConfig): an entry the file declares and the table lacks is inserted with
 *   source 'config'; a 'config' row whose definition differs from the file's is updated; a 'config'
 *   row the file no longer declares is deleted. Each of these is audited with actor 'config-file'.
 * - An entry created or changed through the admin API has source 'api' and is kept as it is by later
 *   starts, also when the file still declares it (the file's version is then shadowed, and logged):
 *   the last deliberate change wins over a file nobody edited.
 * - DELETE through the API of an entry the file declares is refused (409): the next start would seed
 *   it again. It is removed from the file instead.
 * Every change writes a `config-change` audit event (scope network, PS3.15 A.5.3.11 110128) with who,
 * the operation, the revision and the definition before and after (secrets redacted,
 * redactSecrets), in the transaction of the row change, and bumps ae_config_generation, which
 * every gateway process polls to reload (listener-registry.ts).
 */

export const ConfigEntity = { LocalAe: 'local-ae', RemoteNode: 'remote-node' } as const;
export type ConfigEntity = (typeof ConfigEntity)[keyof typeof ConfigEntity];

export const EntrySource = { Config: 'config', Api: 'api' } as const;
export type EntrySource = (typeof EntrySource)[keyof typeof EntrySource];

export const ChangeOperation = { Create: 'create', Update: 'update', Delete: 'delete' } as const;
export type ChangeOperation = (typeof ChangeOperation)[keyof typeof ChangeOperation];

/** The audit actor of changes made by the start-up synchronisation from the YAML file. */
export const CONFIG_FILE_ACTOR = 'config-file';

interface Definitions {
  'local-ae': DimseListenerConfig;
  'remote-node': RemoteNodeConfig;
}

export interface StoredEntry<K extends ConfigEntity> {
  readonly key: string;
  readonly definition: Definitions[K];
  readonly revision: number;
  readonly source: EntrySource;
  readonly updatedAt: Date;
  readonly updatedBy: string;
}

/** Who makes a change: the audit actor (token or user, or config-file), and where from. */
export interface ChangeActor {
  readonly actor: string;
  /** Network address of the caller (audit role 110153 Source). */
  readonly source?: string;
  readonly via: 'http' | 'config-file' | 'cli';
}

const TABLES: Record<ConfigEntity, { table: string; key: string }> = {
  'local-ae': { table: 'local_aes', key: 'ae_title' },
  'remote-node': { table: 'remote_nodes', key: 'name' },
};

const keyOf = <K extends ConfigEntity>(kind: K, d: Definitions[K]): string =>
  kind === ConfigEntity.LocalAe ? (d as DimseListenerConfig).aeTitle : (d as RemoteNodeConfig).name;

export const SELECT_AE_CONFIG_GENERATION = 'SELECT generation FROM ae_config_generation';
const BUMP_GENERATION = 'UPDATE ae_config_generation SET generation = generation + 1 RETURNING generation';
/** Serialises the start-up synchronisation of several processes ('RSAE'). */
const SYNC_LOCK_KEY = 1381187909;

interface Row {
  key: string;
  definition: unknown;
  revision: string;
  source: EntrySource;
  updated_at: Date;
  updated_by: string;
}

function selectSql(kind: ConfigEntity, where: string, lock = false): string {
  const t = TABLES[kind];
  return `SELECT ${t.key} AS key, definition, revision, source, updated_at, updated_by FROM ${t.table} ${where}
ORDER BY ${t.key}${lock ? ' FOR UPDATE' : ''}`;
}

function entry<K extends ConfigEntity>(r: Row): StoredEntry<K> {
  return {
    key: r.key,
    definition: r.definition as Definitions[K],
    revision: Number(r.revision),
    source: r.source,
    updatedAt: r.updated_at,
    updatedBy: r.updated_by,
  };
}

/** JSON with keys sorted: two definitions are the same when these strings are (jsonb reorders keys). */
export function canonicalJson(v: unknown): string {
  if (Array.isArray(v)) return `[${v.map(canonicalJson).join(',')}]`;
  if (v && typeof v === 'object')
    return `{${Object.keys(v)
      .sort()
      .filter((k) => (v as Record<string, unknown>)[k] !== undefined)
      .map((k) => `${JSON.stringify(k)}:${canonicalJson((v as Record<string, unknown>)[k])}`)
      .join(',')}}`;
  return JSON.stringify(v);
}

/** Key names whose values are secrets wherever they appear (a node definition added to later, say). */
const SECRET_KEY = /^(password|passphrase|secret|clientSecret|token|accessToken|apiKey|privateKey|key|authorization)$/i;
const REDACTED = '***';

/**
 * A definition as it may be audited or shown: values of secret-named keys replaced, and the
 * password of a URL's user information (https://user:pass@host) masked. Definitions name secrets
 * by environment variable (passwordEnv, tokenEnv) and files (keyFile), which are kept: they say
 * where the secret is, not what it is.
 */
export function redactSecrets(v: unknown, depth = 0): unknown {
  if (depth > 16) return REDACTED;
  if (typeof v === 'string') return v.replace(/^([a-z][a-z0-9+.-]*:\/\/[^/:@\s]*):[^@/\s]*@/i, `$1:${REDACTED}@`);
  if (Array.isArray(v)) return v.map((x) => redactSecrets(x, depth + 1));
  if (v && typeof v === 'object') {
    const out: Record<string, unknown> = {};
    for (const [k, x] of Object.entries(v)) out[k] = SECRET_KEY.test(k) ? REDACTED : redactSecrets(x, depth + 1);
    return out;
  }
  return v;
}

export class AeConfigStore {
  constructor(private readonly pool: pg.Pool) {}

  async list<K extends ConfigEntity>(kind: K): Promise<StoredEntry<K>[]> {
    const { rows } = await this.pool.query<Row>(selectSql(kind, ''));
    return rows.map((r) => entry<K>(r));
  }

  async get<K extends ConfigEntity>(kind: K, key: string): Promise<StoredEntry<K> | undefined> {
    const { rows } = await this.pool.query<Row>(selectSql(kind, `WHERE ${TABLES[kind].key} = $1`), [key]);
    return rows[0] ? entry<K>(rows[0]) : undefined;
  }

  /** The change counter every process polls (listener-registry.ts). */
  async generation(q: Queryable = this.pool): Promise<number> {
    const { rows } = await q.query<{ generation: string }>(SELECT_AE_CONFIG_GENERATION);
    return Number(rows[0]?.generation ?? 0);
  }

  /** A new entry (source api); 409 when the key exists. */
  async create<K extends ConfigEntity>(kind: K, definition: Definitions[K], who: ChangeActor): Promise<StoredEntry<K>> {
    const key = keyOf(kind, definition);
    return withTransaction(this.pool, async (c) => {
      const cur = await c.query<Row>(selectSql(kind, `WHERE ${TABLES[kind].key} = $1`, true), [key]);
      if (cur.rows[0]) throw new RadScribeError(ErrorCode.StateConflict, `${kind} "${key}" already exists`);
      return this.#insert(c, kind, definition, EntrySource.Api, who);
    });
  }

  /**
   * Replaces an entry whose revision is `expectedRevision` (the If-Match of the admin API); 404
   * when it does not exist, PreconditionFailedError when another change came first. Source
   * becomes api: the change persists over the file (see above).
   */
  async replace<K extends ConfigEntity>(
    kind: K,
    key: string,
    definition: Definitions[K],
    expectedRevision: number,
    who: ChangeActor,
  ): Promise<StoredEntry<K>> {
    return withTransaction(this.pool, async (c) => {
      const before = await this.#locked(c, kind, key, expectedRevision);
      return this.#update(c, kind, before, definition, EntrySource.Api, who);
    });
  }

  /** Deletes an entry at `expectedRevision`; refused (409) when `declaredByFile`. */
  async remove<K extends ConfigEntity>(
    kind: K,
    key: string,
    expectedRevision: number,
    who: ChangeActor,
    declaredByFile: boolean,
  ): Promise<StoredEntry<K>> {
    return withTransaction(this.pool, async (c) => {
      const before = await this.#locked<K>(c, kind, key, expectedRevision);
      if (declaredByFile)
        throw new RadScribeError(
          ErrorCode.StateConflict,
          `${kind} "${key}" is declared in the configuration file; remove it there (the next start would seed it again)`,
        );
      await this.#delete(c, kind, before, who);
      return before;
    });
  }

  /**
   * The start-up synchronisation from the YAML file (rules above). Returns what changed and the
   * keys whose file definition is shadowed by an API change.
   */
  async syncFromConfig(
    config: Pick<RadScribeConfig, 'dimse' | 'remoteNodes'>,
    startedBy: string,
  ): Promise<{ changed: number; shadowed: string[] }> {
    const who: ChangeActor = { actor: CONFIG_FILE_ACTOR, via: 'config-file' };
    return withTransaction(this.pool, async (c) => {
      await c.query('SELECT pg_advisory_xact_lock($1)', [SYNC_LOCK_KEY]);
      let changed = 0;
      const shadowed: string[] = [];
      const sync = async <K extends ConfigEntity>(kind: K, declared: readonly Definitions[K][]): Promise<void> => {
        const rows = (await c.query<Row>(selectSql(kind, '', true))).rows.map((r) => entry<K>(r));
        const byKey = new Map(rows.map((r) => [r.key, r]));
        for (const d of declared) {
          const cur = byKey.get(keyOf(kind, d));
          if (!cur) await this.#insert(c, kind, d, EntrySource.Config, who, startedBy);
          else if (cur.source === EntrySource.Api) {
            if (canonicalJson(cur.definition) !== canonicalJson(d)) shadowed.push(`${kind}:${cur.key}`);
            continue;
          } else if (canonicalJson(cur.definition) !== canonicalJson(d))
            await this.#update(c, kind, cur, d, EntrySource.Config, who, startedBy);
          else continue;
          changed++;
        }
        const keys = new Set(declared.map((d) => keyOf(kind, d)));
        for (const r of rows)
          if (r.source === EntrySource.Config && !keys.has(r.key)) {
            await this.#delete(c, kind, r, who, startedBy);
            changed++;
          }
      };
      await sync(ConfigEntity.LocalAe, config.dimse.listeners);
      await sync(ConfigEntity.RemoteNode, config.remoteNodes);
      return { changed, shadowed };
    });
  }

  async #locked<K extends ConfigEntity>(
    c: pg.PoolClient,
    kind: K,
    key: string,
    expectedRevision: number,
  ): Promise<StoredEntry<K>> {
    const cur = await c.query<Row>(selectSql(kind, `WHERE ${TABLES[kind].key} = $1`, true), [key]);
    const row = cur.rows[0];
    if (!row) throw new RadScribeError(ErrorCode.NotFound, `no ${kind} "${key}"`);
    const before = entry<K>(row);
    if (before.revision !== expectedRevision) throw new PreconditionFailedError(kind, key, before.revision);
    return before;
  }

  async #insert<K extends ConfigEntity>(
    c: pg.PoolClient,
    kind: K,
    d: Definitions[K],
    source: EntrySource,
    who: ChangeActor,
    startedBy?: string,
  ): Promise<StoredEntry<K>> {
    const t = TABLES[kind];
    const { rows } = await c.query<Row>(
      `INSERT INTO ${t.table} (${t.key}, definition, source, updated_by) VALUES ($1, $2::jsonb, $3, $4)
RETURNING ${t.key} AS key, definition, revision, source, updated_at, updated_by`,
      [keyOf(kind, d), JSON.stringify(d), source, who.actor],
    );
    const after = entry<K>(rows[0] as Row);
    await this.#audit(c, kind, ChangeOperation.Create, undefined, after, who, startedBy);
    return after;
  }

  async #update<K extends ConfigEntity>(
    c: pg.PoolClient,
    kind: K,
    before: StoredEntry<K>,
    d: Definitions[K],
    source: EntrySource,
    who: ChangeActor,
    startedBy?: string,
  ): Promise<StoredEntry<K>> {
    const t = TABLES[kind];
    if (keyOf(kind, d) !== before.key)
      throw new RadScribeError(ErrorCode.RequestInvalid, `the ${t.key} of a ${kind} cannot be changed`);
    const { rows } = await c.query<Row>(
      `UPDATE ${t.table} SET definition = $2::jsonb, source = $3, updated_by = $4, updated_at = now(),
  revision = revision + 1 WHERE ${t.key} = $1
RETURNING ${t.key} AS key, definition, revision, source, updated_at, updated_by`,
      [before.key, JSON.stringify(d), source, who.actor],
    );
    const after = entry<K>(rows[0] as Row);
    await this.#audit(c, kind, ChangeOperation.Update, before, after, who, startedBy);
    return after;
  }

  async #delete<K extends ConfigEntity>(
    c: pg.PoolClient,
    kind: K,
    before: StoredEntry<K>,
    who: ChangeActor,
    startedBy?: string,
  ): Promise<void> {
    const t = TABLES[kind];
    await c.query(`DELETE FROM ${t.table} WHERE ${t.key} = $1`, [before.key]);
    await this.#audit(c, kind, ChangeOperation.Delete, before, undefined, who, startedBy);
  }

  /** The config-change event of one row change, in its transaction; and the generation bump. */
  async #audit<K extends ConfigEntity>(
    c: pg.PoolClient,
    kind: K,
    operation: ChangeOperation,
    before: StoredEntry<K> | undefined,
    after: StoredEntry<K> | undefined,
    who: ChangeActor,
    startedBy?: string,
  ): Promise<void> {
    const { rows } = await c.query<{ generation: string }>(BUMP_GENERATION);
    await recordAudit(c, {
      kind: AuditEventKind.ConfigChange,
      actor: who.actor,
      ...(who.source ? { source: who.source } : {}),
      detail: {
        scope: 'network',
        entity: kind,
        key: (after ?? before)?.key,
        operation,
        via: who.via,
        ...(startedBy ? { startedBy } : {}),
        revision: after?.revision ?? before?.revision,
        generation: Number(rows[0]?.generation),
        before: before ? redactSecrets(before.definition) : null,
        after: after ? redactSecrets(after.definition) : null,
      },
    });
  }
}

/** An If-Match that names a revision another change replaced (HTTP 412, RFC 9110 §13.1.1). */
export class PreconditionFailedError extends RadScribeError {
  override name = 'PreconditionFailedError';
  readonly currentRevision: number;
  constructor(kind: ConfigEntity, key: string, currentRevision: number) {
    super(ErrorCode.StateConflict, `${kind} "${key}" was changed meanwhile (now revision ${currentRevision})`);
    this.currentRevision = currentRevision;
  }
}
