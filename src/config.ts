import { readFileSync } from 'node:fs';
import path from 'node:path';
import { parse as parseYaml } from 'yaml';
import { SrProfile } from './dicom/sr/document.js';
import { ConfigError } from './errors.js';
import { PACKAGE_ROOT } from './runtime-paths.js';

/**
 * One configuration type for the whole gateway (STYLE §2.5). loadConfig() merges
 * config/default.yaml → the --config file → RADSCRIBE_* environment variables, then
 * validateConfig() reports every problem with its dotted path in one ConfigError (MONAI
 * ConfigurationValidator). Slices of the result are passed into constructors; nothing below
 * main.ts reads configuration globally.
 */

export const ExecutionProvider = { Cuda: 'cuda', Cpu: 'cpu' } as const;
export type ExecutionProvider = (typeof ExecutionProvider)[keyof typeof ExecutionProvider];

export const DestinationType = { Folder: 'folder', StowRs: 'stow-rs' } as const;
export type DestinationType = (typeof DestinationType)[keyof typeof DestinationType];

export interface RemoteNodeAuthConfig {
  type: 'none' | 'basic' | 'bearer';
  username?: string;
  /** Name of the environment variable that holds the password or token. */
  passwordEnv?: string;
  tokenEnv?: string;
}

export interface RemoteNodeConfig {
  name: string;
  baseUrl: string;
  auth: RemoteNodeAuthConfig;
  timeoutMs: number;
  poll: {
    enabled: boolean;
    intervalMs: number;
    lookbackDays: number;
    query: Record<string, string>;
    /**
     * WADO-RS `transfer-syntax` to ask for (PS3.18 §8.7.3.5.2): unset = the server's default (Orthanc
     * transcodes to Explicit VR LE), `*` = as stored (keeps lossless compression; orthanc-dicomweb 1.7
     * refuses it), or a UID.
     */
    transferSyntax?: string;
  };
}

/** SR output profile per destination (issue #5): TID 2000 report, or IHE AIR (TID 1500, Comprehensive 3D SR). */
export { SrProfile };

interface DestinationCommon {
  name: string;
  /** Which SR the destination receives. Default report. */
  srProfile: SrProfile;
  /** Also send an Encapsulated PDF of the draft in the same series, for viewers that do not render SR. */
  pdfCompanion: boolean;
}
export type DestinationConfig =
  | (DestinationCommon & { type: 'folder'; path: string })
  | (DestinationCommon & { type: 'stow-rs'; node: string });

export interface RouteConfig {
  name: string;
  match: { modality?: string[] };
  destination: string;
}

export interface RadScribeConfig {
  dataDir: string;
  database: { url: string; poolSize: number };
  http: { host: string; port: number; publicBaseUrl: string };
  ingest: { stabilityWindowMs: number; maxPartBytes: number; maxRequestBytes: number };
  model: {
    bundle: string;
    executionProviders: ExecutionProvider[];
    strict: boolean;
    maxNewTokens: number;
    timeoutMs: number;
    intraOpNumThreads: number;
  };
  selection: { eachImage: string[]; perSeriesSlices: number };
  remoteNodes: RemoteNodeConfig[];
  destinations: DestinationConfig[];
  defaultDestination: string;
  routes: RouteConfig[];
  jobs: { pollIntervalMs: number; leaseMs: number; maxAttempts: number };
  log: { level: 'error' | 'warn' | 'info' | 'debug' };
}

export const DEFAULT_CONFIG_FILE = path.join(PACKAGE_ROOT, 'config', 'default.yaml');
export const ENV_PREFIX = 'RADSCRIBE_';
export const DEFAULT_REMOTE_TIMEOUT_MS = 30_000;
export const DEFAULT_POLL_INTERVAL_MS = 60_000;

type Json = null | boolean | number | string | Json[] | { [k: string]: Json };
type JsonObject = { [k: string]: Json };

function isObject(v: unknown): v is JsonObject {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** Deep merge: objects merge key by key, everything else (arrays included) is replaced. */
export function mergeConfig(base: JsonObject, over: JsonObject): JsonObject {
  const out: JsonObject = { ...base };
  for (const [k, v] of Object.entries(over)) {
    const b = out[k];
    out[k] = isObject(b) && isObject(v) ? mergeConfig(b, v) : v;
  }
  return out;
}

function readYamlFile(file: string, problems: string[]): JsonObject {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    problems.push(`${file}: cannot read (${(err as NodeJS.ErrnoException).code ?? 'error'})`);
    return {};
  }
  try {
    const doc = parseYaml(text) as unknown;
    if (doc === null || doc === undefined) return {};
    if (!isObject(doc)) {
      problems.push(`${file}: top level must be a mapping`);
      return {};
    }
    return doc;
  } catch (err) {
    problems.push(`${file}: invalid YAML (${(err as Error).message.split('\n')[0]})`);
    return {};
  }
}

const snake = (key: string): string => key.replace(/([a-z0-9])([A-Z])/g, '$1_$2').toUpperCase();

/**
 * Apply RADSCRIBE_* variables by walking the known keys: RADSCRIBE_INGEST_STABILITY_WINDOW_MS
 * matches ingest → stabilityWindowMs. Values are YAML scalars (numbers, booleans, [a, b]).
 * Unknown variables are problems, so a typo is not silently ignored.
 */
export function applyEnvOverrides(cfg: JsonObject, env: NodeJS.ProcessEnv, problems: string[]): JsonObject {
  let out = cfg;
  const IGNORED = new Set(['RADSCRIBE_LOG_LEVEL', 'RADSCRIBE_IN_NETNS', 'RADSCRIBE_NO_NETNS']);
  for (const [name, raw] of Object.entries(env)) {
    if (!name.startsWith(ENV_PREFIX) || raw === undefined || IGNORED.has(name)) continue;
    // Secrets referenced by passwordEnv/tokenEnv are read where they are used, not merged here.
    if (/_(PASSWORD|TOKEN|SECRET)$/.test(name)) continue;
    const rest = name.slice(ENV_PREFIX.length);
    const keyPath = resolveEnvPath(out, rest);
    if (!keyPath) {
      problems.push(`${name}: does not name a configuration key`);
      continue;
    }
    let value: Json;
    try {
      value = parseYaml(raw) as Json;
    } catch {
      value = raw;
    }
    out = setPath(out, keyPath, value ?? '');
  }
  return out;
}

function resolveEnvPath(node: Json | undefined, rest: string): string[] | undefined {
  if (!isObject(node)) return undefined;
  for (const key of Object.keys(node)) {
    const s = snake(key);
    if (rest === s) return [key];
    if (rest.startsWith(`${s}_`)) {
      const sub = resolveEnvPath(node[key], rest.slice(s.length + 1));
      if (sub) return [key, ...sub];
    }
  }
  return undefined;
}

function setPath(obj: JsonObject, keyPath: string[], value: Json): JsonObject {
  const [head, ...tail] = keyPath;
  if (head === undefined) return obj;
  const child = obj[head];
  return { ...obj, [head]: tail.length === 0 ? value : setPath(isObject(child) ? child : {}, tail, value) };
}

/** Validates the merged document and returns the typed config, or throws one ConfigError with every problem. */
export function validateConfig(doc: JsonObject, problems: string[] = []): RadScribeConfig {
  const v = new Validator(problems);
  const database = v.obj(doc, 'database');
  const http = v.obj(doc, 'http');
  const ingest = v.obj(doc, 'ingest');
  const model = v.obj(doc, 'model');
  const selection = v.obj(doc, 'selection');
  const jobs = v.obj(doc, 'jobs');
  const log = v.obj(doc, 'log');

  const remoteNodes = v.arr(doc, 'remoteNodes').map((n, i) => validateRemoteNode(v, n, `remoteNodes[${i}]`));
  const nodeNames = new Set(remoteNodes.map((n) => n.name));
  const destinations = v
    .arr(doc, 'destinations')
    .map((d, i) => validateDestination(v, d, `destinations[${i}]`, nodeNames));
  const destNames = new Set(destinations.map((d) => d.name));
  v.unique(
    remoteNodes.map((n) => n.name),
    'remoteNodes',
    'name',
  );
  v.unique(
    destinations.map((d) => d.name),
    'destinations',
    'name',
  );
  const defaultDestination = v.str(doc, 'defaultDestination', '');
  if (!destNames.has(defaultDestination))
    v.problem('defaultDestination', `must name one of destinations (${[...destNames].join(', ') || 'none defined'})`);
  const routes = v.arr(doc, 'routes').map((r, i): RouteConfig => {
    const p = `routes[${i}]`;
    const ro = v.asObj(r, p);
    const match = v.obj(ro, 'match', p);
    const destination = v.str(ro, 'destination', p);
    if (!destNames.has(destination)) v.problem(`${p}.destination`, `unknown destination "${destination}"`);
    const modality = match.modality === undefined ? undefined : v.strArr(match, 'modality', `${p}.match`);
    return { name: v.str(ro, 'name', p), match: modality ? { modality } : {}, destination };
  });

  const eps = v.strArr(model, 'executionProviders', 'model');
  for (const ep of eps)
    if (ep !== 'cuda' && ep !== 'cpu')
      v.problem('model.executionProviders', `unknown execution provider "${ep}" (cuda, cpu)`);
  if (eps.length === 0) v.problem('model.executionProviders', 'must list at least one provider');
  const level = v.str(log, 'level', 'log');
  if (!['error', 'warn', 'info', 'debug'].includes(level))
    v.problem('log.level', 'must be one of error, warn, info, debug');

  const cfg: RadScribeConfig = {
    dataDir: v.str(doc, 'dataDir', ''),
    database: {
      url: v.str(database, 'url', 'database', true),
      poolSize: v.int(database, 'poolSize', 'database', 1, 100),
    },
    http: {
      host: v.str(http, 'host', 'http'),
      port: v.int(http, 'port', 'http', 0, 65535),
      publicBaseUrl: v.url(http, 'publicBaseUrl', 'http', true),
    },
    ingest: {
      stabilityWindowMs: v.int(ingest, 'stabilityWindowMs', 'ingest', 0, 86_400_000),
      maxPartBytes: v.int(ingest, 'maxPartBytes', 'ingest', 1024, Number.MAX_SAFE_INTEGER),
      maxRequestBytes: v.int(ingest, 'maxRequestBytes', 'ingest', 1024, Number.MAX_SAFE_INTEGER),
    },
    model: {
      bundle: v.str(model, 'bundle', 'model'),
      executionProviders: eps as ExecutionProvider[],
      strict: v.bool(model, 'strict', 'model'),
      maxNewTokens: v.int(model, 'maxNewTokens', 'model', 1, 4096),
      timeoutMs: v.int(model, 'timeoutMs', 'model', 100, 3_600_000),
      intraOpNumThreads: v.int(model, 'intraOpNumThreads', 'model', 0, 256),
    },
    selection: {
      eachImage: v.strArr(selection, 'eachImage', 'selection'),
      perSeriesSlices: v.int(selection, 'perSeriesSlices', 'selection', 1, 64),
    },
    remoteNodes,
    destinations,
    defaultDestination,
    routes,
    jobs: {
      pollIntervalMs: v.int(jobs, 'pollIntervalMs', 'jobs', 10, 3_600_000),
      leaseMs: v.int(jobs, 'leaseMs', 'jobs', 1000, 86_400_000),
      maxAttempts: v.int(jobs, 'maxAttempts', 'jobs', 1, 100),
    },
    log: { level: level as RadScribeConfig['log']['level'] },
  };
  if (cfg.dataDir === '') v.problem('dataDir', 'must not be empty');
  if (problems.length > 0) throw new ConfigError(problems);
  return cfg;
}

function validateRemoteNode(v: Validator, n: unknown, p: string): RemoteNodeConfig {
  const o = v.asObj(n, p);
  const auth = o.auth === undefined ? {} : v.obj(o, 'auth', p);
  const type = (auth.type ?? 'none') as string;
  if (!['none', 'basic', 'bearer'].includes(type)) v.problem(`${p}.auth.type`, 'must be none, basic or bearer');
  const a: RemoteNodeAuthConfig = { type: type as RemoteNodeAuthConfig['type'] };
  if (type === 'basic') {
    a.username = v.str(auth, 'username', `${p}.auth`);
    a.passwordEnv = v.str(auth, 'passwordEnv', `${p}.auth`);
  }
  if (type === 'bearer') a.tokenEnv = v.str(auth, 'tokenEnv', `${p}.auth`);
  const poll = o.poll === undefined ? {} : v.obj(o, 'poll', p);
  const query = poll.query === undefined ? {} : v.obj(poll, 'query', `${p}.poll`);
  const q: Record<string, string> = {};
  for (const [k, val] of Object.entries(query)) {
    if (typeof val !== 'string' && typeof val !== 'number') v.problem(`${p}.poll.query.${k}`, 'must be a string');
    else q[k] = String(val);
  }
  return {
    name: v.str(o, 'name', p),
    baseUrl: v.url(o, 'baseUrl', p),
    auth: a,
    timeoutMs: o.timeoutMs === undefined ? DEFAULT_REMOTE_TIMEOUT_MS : v.int(o, 'timeoutMs', p, 100, 3_600_000),
    poll: {
      enabled: poll.enabled === undefined ? false : v.bool(poll, 'enabled', `${p}.poll`),
      intervalMs:
        poll.intervalMs === undefined
          ? DEFAULT_POLL_INTERVAL_MS
          : v.int(poll, 'intervalMs', `${p}.poll`, 100, 86_400_000),
      lookbackDays: poll.lookbackDays === undefined ? 1 : v.int(poll, 'lookbackDays', `${p}.poll`, 0, 36500),
      query: q,
      ...(poll.transferSyntax === undefined ? {} : { transferSyntax: v.str(poll, 'transferSyntax', `${p}.poll`) }),
    },
  };
}

function validateDestination(v: Validator, d: unknown, p: string, nodes: ReadonlySet<string>): DestinationConfig {
  const o = v.asObj(d, p);
  const name = v.str(o, 'name', p);
  const type = v.str(o, 'type', p);
  const srProfile = (o.srProfile ?? 'report') as string;
  if (!(Object.values(SrProfile) as string[]).includes(srProfile))
    v.problem(`${p}.srProfile`, `must be one of ${Object.values(SrProfile).join(', ')}`);
  const common = {
    name,
    srProfile: srProfile as SrProfile,
    pdfCompanion: o.pdfCompanion === undefined ? false : v.bool(o, 'pdfCompanion', p),
  };
  if (type === 'folder') return { ...common, type, path: v.str(o, 'path', p) };
  if (type === 'stow-rs') {
    const node = v.str(o, 'node', p);
    if (!nodes.has(node)) v.problem(`${p}.node`, `unknown remote node "${node}"`);
    return { ...common, type, node };
  }
  v.problem(`${p}.type`, 'must be folder or stow-rs');
  return { ...common, type: 'folder', path: '' };
}

/** Collects problems instead of throwing, so every error is reported at once. */
class Validator {
  constructor(private readonly problems: string[]) {}
  problem(p: string, msg: string): void {
    this.problems.push(`${p}: ${msg}`);
  }
  private key(parent: string | undefined, k: string): string {
    return parent ? `${parent}.${k}` : k;
  }
  asObj(v: unknown, p: string): JsonObject {
    if (isObject(v)) return v;
    this.problem(p, 'must be a mapping');
    return {};
  }
  obj(o: JsonObject, k: string, parent?: string): JsonObject {
    return this.asObj(o[k], this.key(parent, k));
  }
  arr(o: JsonObject, k: string, parent?: string): Json[] {
    const v = o[k];
    if (v === undefined || v === null) return [];
    if (Array.isArray(v)) return v;
    this.problem(this.key(parent, k), 'must be a list');
    return [];
  }
  str(o: JsonObject, k: string, parent?: string, allowEmpty = false): string {
    const v = o[k];
    if (typeof v === 'string' && (allowEmpty || v.length > 0)) return v;
    if (v === undefined || v === null) {
      if (allowEmpty) return '';
      this.problem(this.key(parent, k), 'is required');
    } else this.problem(this.key(parent, k), allowEmpty ? 'must be a string' : 'must be a non-empty string');
    return '';
  }
  strArr(o: JsonObject, k: string, parent?: string): string[] {
    const v = o[k];
    if (Array.isArray(v) && v.every((x) => typeof x === 'string')) return v as string[];
    this.problem(this.key(parent, k), 'must be a list of strings');
    return [];
  }
  int(o: JsonObject, k: string, parent: string | undefined, min: number, max: number): number {
    const v = o[k];
    if (typeof v === 'number' && Number.isInteger(v) && v >= min && v <= max) return v;
    this.problem(this.key(parent, k), `must be an integer from ${min} to ${max}`);
    return min;
  }
  bool(o: JsonObject, k: string, parent?: string): boolean {
    const v = o[k];
    if (typeof v === 'boolean') return v;
    this.problem(this.key(parent, k), 'must be true or false');
    return false;
  }
  url(o: JsonObject, k: string, parent?: string, allowEmpty = false): string {
    const s = this.str(o, k, parent, allowEmpty);
    if (s === '') return s;
    try {
      const u = new URL(s);
      if (u.protocol !== 'http:' && u.protocol !== 'https:')
        this.problem(this.key(parent, k), 'must be an http(s) URL');
    } catch {
      this.problem(this.key(parent, k), 'must be an absolute URL');
    }
    return s.replace(/\/+$/, '');
  }
  unique(values: string[], p: string, field: string): void {
    const seen = new Set<string>();
    for (const n of values) {
      if (seen.has(n)) this.problem(p, `duplicate ${field} "${n}"`);
      seen.add(n);
    }
  }
}

export interface LoadConfigOptions {
  file?: string;
  env?: NodeJS.ProcessEnv;
  /** Extra overrides applied after the file and before the environment (used by `demo`). */
  overrides?: JsonObject;
  /** Relative paths (dataDir, bundle, folder destinations) resolve against this; default: the package root. */
  baseDir?: string;
}

export function loadConfig(opts: LoadConfigOptions = {}): RadScribeConfig {
  const env = opts.env ?? process.env;
  const problems: string[] = [];
  let doc = readYamlFile(DEFAULT_CONFIG_FILE, problems);
  if (opts.file) doc = mergeConfig(doc, readYamlFile(opts.file, problems));
  if (opts.overrides) doc = mergeConfig(doc, opts.overrides);
  doc = applyEnvOverrides(doc, env, problems);
  if (env.DATABASE_URL) doc = mergeConfig(doc, { database: { url: env.DATABASE_URL } });
  const cfg = validateConfig(doc, problems);
  return resolvePaths(cfg, opts.baseDir ?? PACKAGE_ROOT);
}

function resolvePaths(cfg: RadScribeConfig, base: string): RadScribeConfig {
  const abs = (p: string) => path.resolve(base, p);
  return {
    ...cfg,
    dataDir: abs(cfg.dataDir),
    model: { ...cfg.model, bundle: abs(cfg.model.bundle) },
    destinations: cfg.destinations.map((d) => (d.type === 'folder' ? { ...d, path: abs(d.path) } : d)),
  };
}

/** The config as it may be shown or audited: no secrets (passwords are only ever env var names). */
export function redactedConfig(cfg: RadScribeConfig): RadScribeConfig {
  return { ...cfg, database: { ...cfg.database, url: cfg.database.url.replace(/\/\/([^:@/]+):[^@/]*@/, '//$1:***@') } };
}
