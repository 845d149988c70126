import express, { type NextFunction, type Request, type Response, type Router } from 'express';
import { principalOf } from '../../app.js';
import {
  type AeConfigStore,
  type ChangeActor,
  ConfigEntity,
  redactSecrets,
  type StoredEntry,
} from '../../config/ae-store.js';
import { type RadScribeConfig, type RemoteNodeConfig, validateConfigItem } from '../../config.js';
import { aeTitleProblem, normalizeAeTitle } from '../../dimse/ae-title.js';
import type { ApplyReport } from '../../dimse/listener-registry.js';
import type { DimseListenerConfig } from '../../dimse/storage-scp.js';
import { ErrorCode, RadScribeError } from '../../errors.js';
import { actorOf } from '../auth/roles.js';
import {
  etagOf,
  ifMatchRevision,
  type ProblemItem,
  problemHandler,
  problemItem,
  ValidationProblem,
} from './problem.js';

/**
 * The admin API's configuration resources (issue 13, start of /api/v1; admin role, route-policy.ts):
 *   GET/POST /api/v1/local-aes, GET/PUT/DELETE /api/v1/local-aes/{aet}
 *   GET/POST /api/v1/remote-nodes, GET/PUT/DELETE /api/v1/remote-nodes/{name}
 * A body is the definition as in the YAML file (one `dimse.listeners[]` or `remoteNodes[]` item),
 * validated by the same function as the file (config.ts validateConfigItem), every problem at once
 * as RFC 9457 problem details. GET answers an ETag (the row's revision); PUT and DELETE need If-Match
 * (428 without, 412 when stale). A local AE change is applied to this process's listeners before the
 * answer (`applied`), and reaches other processes within their poll (local-ae-service.ts).
 */

export interface AdminRouterDeps {
  readonly store: AeConfigStore;
  /** The file's configuration: route names, destinations, and which entries the file declares. */
  readonly config: Pick<RadScribeConfig, 'dimse' | 'remoteNodes' | 'routes' | 'destinations'>;
  /** Applies the local_aes table to the running listeners; undefined before they run. */
  readonly applyLocalAes: () => Promise<ApplyReport | undefined>;
}

const BODY = 'body';

function who(req: Request, res: Response): ChangeActor {
  const p = principalOf(res);
  return {
    actor: p ? actorOf(p) : 'unknown',
    ...(req.socket.remoteAddress ? { source: req.socket.remoteAddress } : {}),
    via: 'http',
  };
}

const json = express.json({ limit: '64kb', type: () => true });
function jsonBody(req: Request, res: Response, next: NextFunction): void {
  json(req, res, (err?: unknown) => {
    if (!err) {
      const b: unknown = req.body;
      if (b === null || typeof b !== 'object' || Array.isArray(b))
        return next(new ValidationProblem([{ pointer: '', detail: 'must be a JSON object' }]));
      return next();
    }
    const type = (err as { type?: unknown }).type;
    next(
      type === 'entity.too.large'
        ? new RadScribeError(ErrorCode.PayloadTooLarge, 'request body is larger than 64 KiB')
        : new ValidationProblem([{ pointer: '', detail: 'is not JSON' }]),
    );
  });
}

function view<K extends ConfigEntity>(e: StoredEntry<K>, applied?: ApplyReport): Record<string, unknown> {
  return {
    definition: redactSecrets(e.definition),
    revision: e.revision,
    source: e.source,
    updatedAt: e.updatedAt.toISOString(),
    updatedBy: e.updatedBy,
    ...(applied ? { applied } : {}),
  };
}

/** One resource kind: how its body is validated and cross-checked, and what a change triggers. */
interface Resource<K extends ConfigEntity> {
  readonly kind: K;
  readonly path: string;
  /** The key of a path segment, or a 404 when it cannot be one. */
  key(segment: string): string;
  keyOf(d: DefinitionOf<K>): string;
  /** The body with the path's key filled in when absent (PUT). */
  withKey(body: Record<string, unknown>, key: string): Record<string, unknown>;
  validate(body: unknown): { value: DefinitionOf<K>; problems: readonly string[] };
  /** Problems with the other entries and the rest of the configuration. */
  crossCheck(d: DefinitionOf<K>, others: readonly StoredEntry<K>[]): ProblemItem[];
  declaredByFile(key: string): boolean;
  /** Why it may not be deleted (a destination uses it), or undefined. */
  inUse(key: string): string | undefined;
  readonly changed?: () => Promise<ApplyReport | undefined>;
}
type DefinitionOf<K extends ConfigEntity> = K extends 'local-ae' ? DimseListenerConfig : RemoteNodeConfig;

function localAes(deps: AdminRouterDeps): Resource<'local-ae'> {
  const routes = new Set(deps.config.routes.map((r) => r.name));
  return {
    kind: ConfigEntity.LocalAe,
    path: '/v1/local-aes',
    key: (s) => {
      if (aeTitleProblem(s)) throw new RadScribeError(ErrorCode.NotFound, 'no such local AE');
      return normalizeAeTitle(s);
    },
    keyOf: (d) => d.aeTitle,
    withKey: (b, key) => ({ aeTitle: key, ...b }),
    validate: (b) => validateConfigItem('dimseListener', b, BODY),
    crossCheck: (d, others) => {
      const out: ProblemItem[] = [];
      if (d.route !== undefined && !routes.has(d.route))
        out.push({
          pointer: '/route',
          detail: `unknown route "${d.route}" (${[...routes].join(', ') || 'none defined'})`,
        });
      const clash = others.find(
        (o) => o.key !== d.aeTitle && d.port !== 0 && o.definition.port === d.port && o.definition.host === d.host,
      );
      if (clash)
        out.push({ pointer: '/port', detail: `${d.host}:${d.port} is already used by local AE "${clash.key}"` });
      return out;
    },
    declaredByFile: (key) => deps.config.dimse.listeners.some((l) => l.aeTitle === key),
    inUse: () => undefined,
    changed: deps.applyLocalAes,
  };
}

function remoteNodes(deps: AdminRouterDeps): Resource<'remote-node'> {
  return {
    kind: ConfigEntity.RemoteNode,
    path: '/v1/remote-nodes',
    key: (s) => s,
    keyOf: (d) => d.name,
    withKey: (b, key) => ({ name: key, ...b }),
    validate: (b) => validateConfigItem('remoteNode', b, BODY),
    crossCheck: () => [],
    declaredByFile: (key) => deps.config.remoteNodes.some((n) => n.name === key),
    inUse: (key) => {
      const d = deps.config.destinations.find((x) => x.type === 'stow-rs' && x.node === key);
      return d ? `destination "${d.name}" sends to this node` : undefined;
    },
  };
}

function mount<K extends ConfigEntity>(r: Router, deps: AdminRouterDeps, res: Resource<K>): void {
  const { store } = deps;
  const validated = async (body: unknown, keyFromPath?: string): Promise<DefinitionOf<K>> => {
    const { value, problems } = res.validate(body);
    const errors = problems.map((p) => problemItem(p, BODY));
    if (keyFromPath !== undefined && problems.length === 0 && res.keyOf(value) !== keyFromPath)
      errors.push({
        pointer: '',
        detail: `the key in the body (${res.keyOf(value)}) differs from the URL's (${keyFromPath})`,
      });
    if (errors.length === 0) errors.push(...res.crossCheck(value, (await store.list(res.kind)) as StoredEntry<K>[]));
    if (errors.length > 0) throw new ValidationProblem(errors);
    return value;
  };
  const expected = async (req: Request, key: string): Promise<number> => {
    const m = ifMatchRevision(req.get('if-match'));
    if (m !== 'any') return m;
    const cur = await store.get(res.kind, key);
    if (!cur) throw new RadScribeError(ErrorCode.NotFound, `no ${res.kind} "${key}"`);
    return cur.revision;
  };

  r.get(res.path, async (_req, out, next) => {
    try {
      out.json({ items: (await store.list(res.kind)).map((e) => ({ key: e.key, ...view(e) })) });
    } catch (err: unknown) {
      next(err);
    }
  });
  r.post(res.path, jsonBody, async (req, out, next) => {
    try {
      const d = await validated(req.body);
      const e = await store.create(res.kind, d as never, who(req, out));
      const applied = await res.changed?.();
      out
        .status(201)
        .set('ETag', etagOf(e.revision))
        .location(`/api${res.path}/${encodeURIComponent(e.key)}`)
        .json(view(e, applied));
    } catch (err: unknown) {
      next(err);
    }
  });
  const one = `${res.path}/:key`;
  r.get(one, async (req, out, next) => {
    try {
      const key = res.key(String(req.params.key));
      const e = await store.get(res.kind, key);
      if (!e) throw new RadScribeError(ErrorCode.NotFound, `no ${res.kind} "${key}"`);
      out.set('ETag', etagOf(e.revision)).json(view(e));
    } catch (err: unknown) {
      next(err);
    }
  });
  r.put(one, jsonBody, async (req, out, next) => {
    try {
      const key = res.key(String(req.params.key));
      const rev = await expected(req, key);
      const d = await validated(res.withKey(req.body as Record<string, unknown>, key), key);
      const e = await store.replace(res.kind, key, d as never, rev, who(req, out));
      const applied = await res.changed?.();
      out.set('ETag', etagOf(e.revision)).json(view(e, applied));
    } catch (err: unknown) {
      next(err);
    }
  });
  r.delete(one, async (req, out, next) => {
    try {
      const key = res.key(String(req.params.key));
      const rev = await expected(req, key);
      const why = res.inUse(key);
      if (why) throw new RadScribeError(ErrorCode.StateConflict, `${res.kind} "${key}" is in use: ${why}`);
      await store.remove(res.kind, key, rev, who(req, out), res.declaredByFile(key));
      const applied = await res.changed?.();
      out.status(applied ? 200 : 204);
      if (applied) out.json({ applied });
      else out.end();
    } catch (err: unknown) {
      next(err);
    }
  });
}

export function createAdminRouter(deps: AdminRouterDeps): Router {
  const r = express.Router();
  mount(r, deps, localAes(deps));
  mount(r, deps, remoteNodes(deps));
  // Only errors of the routes above reach this; unknown paths fall through to the app's 404.
  r.use('/v1', problemHandler());
  return r;
}
