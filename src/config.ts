import { readFileSync } from 'node:fs';
import path from 'node:path';
import { parse as parseYaml } from 'yaml';
import { type AuditRetentionConfig, validateAuditRetention } from './config/audit-retention.js';
import { type CompletenessConfig, validateCompleteness } from './config/completeness.js';
import { CONFIG_DEFAULTS, REMOTE_NODE_DEFAULTS } from './config/defaults.js';
import { checkDimseNodes, type DimseNodeConfig, validateDimseNode } from './config/dimse-qr.js';
import { validateListenerPolicy } from './config/listener-policy.js';
import { type QidoPollWindowConfig, validateQidoPollWindow } from './config/qido-poll.js';
import { type RoutingRule, validateRoutingRules } from './config/routing-rules.js';
import { closestKey, didYouMean } from './config/suggest.js';
import type { DicomLimits } from './dicom/limits.js';
import { SrProfile } from './dicom/sr/draft-policy.js';
import { aeTitleProblem } from './dimse/ae-title.js';
import {
  DEFAULT_REQUIRE_CLIENT_CERT,
  DEFAULT_TLS_MIN_VERSION,
  type DicomTlsClientConfig,
  type DicomTlsListenerConfig,
  TlsMinVersion,
} from './dimse/dicom-tls.js';
import type { DimseListenerConfig } from './dimse/storage-scp.js';
import { DEFAULT_STORE_SCU_TIMEOUTS } from './dimse/store-scu.js';
import { ConfigError } from './errors.js';
import { DEFAULT_STOW_VERIFY, VerifyStored } from './export/sr-destination.js';
import { ExecutionProvider } from './inference/vision-language-model.js';
import type { RetentionRule } from './ingest/retention.js';
import { ReceivedVia } from './ingest/types.js';
import { PACKAGE_ROOT } from './runtime-paths.js';

/**
 * One configuration type for the whole gateway (STYLE §2.5). loadConfig() merges
 * config/default.yaml → the --config file → RADSCRIBE_* environment variables, then
 * validateConfig() reports every problem with its dotted path in one ConfigError (MONAI
 * ConfigurationValidator). A key the validator does not read is a problem too, with the key meant
 * when one is close (issue 8: a misspelled key must not silently fall back to its default). Slices
 * of the result are passed into constructors; nothing below main.ts reads configuration globally.
 * Defaults live in src/config/defaults.ts (which config/default.yaml mirrors).
 */

export { CONFIG_DEFAULTS, REMOTE_NODE_DEFAULTS } from './config/defaults.js';
/** The execution providers the inference layer knows (one definition: src/inference). */

export const DestinationType = { Folder: 'folder', StowRs: 'stow-rs', Dimse: 'dimse' } as const;
export type DestinationType = (typeof DestinationType)[keyof typeof DestinationType];

export const RemoteAuthType = { None: 'none', Basic: 'basic', Bearer: 'bearer' } as const;
export type RemoteAuthType = (typeof RemoteAuthType)[keyof typeof RemoteAuthType];

export const LogLevel = { Error: 'error', Warn: 'warn', Info: 'info', Debug: 'debug' } as const;
export type LogLevel = (typeof LogLevel)[keyof typeof LogLevel];

export interface RemoteNodeAuthConfig {
  type: RemoteAuthType;
  username?: string;
  /** Name of the environment variable that holds the password or token. */
  passwordEnv?: string;
  tokenEnv?: string;
}

/** Exponential backoff after failed polls: initialMs · factor^(failures-1), at most maxMs. */
export interface BackoffConfig {
  initialMs: number;
  maxMs: number;
  factor: number;
}

export interface RemoteNodeConfig {
  name: string;
  /** DICOMweb base URL; '' for a DIMSE-only node (then `dimse` is set). */
  baseUrl: string;
  /** DIMSE address, operations and C-FIND/C-MOVE poller (src/config/dimse-qr.ts). */
  dimse?: DimseNodeConfig;
  auth: RemoteNodeAuthConfig;
  /** Idle timeout of QIDO-RS and WADO-RS requests: no headers or body bytes for this long. */
  timeoutMs: number;
  /** Idle timeout of STOW-RS requests to this node (the draft SR going back). */
  storeTimeoutMs: number;
  /** With the incremental-window keys of src/config/qido-poll.ts. */
  poll: QidoPollWindowConfig & {
    enabled: boolean;
    intervalMs: number;
    lookbackDays: number;
    /** QIDO-RS `limit` per page (PS3.18 §8.3.4.4). */
    pageSize: number;
    /** Pages per poll at most (a server that ignores `offset` would loop forever). */
    maxPages: number;
    backoff: BackoffConfig;
    /**
     * Failed WADO-RS retrieves of one study (spaced by `backoff`) before it is given up until the
     * PACS lists a different number of instances for it (issue 9).
     */
    maxRetrieveAttempts: number;
    query: Record<string, string>;
    /**
     * WADO-RS `transfer-syntax` to ask for first (PS3.18 §8.7.3.5.2): unset = negotiate from the
     * original (`*`), falling back per transfer-syntax-negotiation.ts; a UID = ask for that first.
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
  | (DestinationCommon & {
      type: 'stow-rs';
      node: string;
      /**
       * When the PACS's copy is read back (WADO-RS metadata) and compared with what was sent:
       * `always` (default; Orthanc answers a duplicate with plain success) or `on-duplicate`
       * (only after 0x0111, 409 or a Warning: for a PACS without WADO-RS). src/export/sr-destination.ts.
       */
      verifyStored: VerifyStored;
    })
  | (DestinationCommon & { type: 'dimse' } & DimseDestinationConfig);

/** A C-STORE SCP that receives the drafts (issue 11; src/dimse/store-scu.ts). */
export interface DimseDestinationConfig {
  host: string;
  port: number;
  /** The PACS's AE title (PS3.5 AE). */
  calledAeTitle: string;
  /** Ours, as the PACS knows it. */
  callingAeTitle: string;
  /** TCP connect. */
  connectTimeoutMs: number;
  /** ARTIM (PS3.8 §9.1.5): A-ASSOCIATE-RQ → AC/RJ, A-RELEASE-RQ → RP. */
  associationTimeoutMs: number;
  /** C-STORE-RQ sent → C-STORE-RSP. */
  responseTimeoutMs: number;
  /** DICOM TLS (PS3.15 B.1/B.9, src/dimse/dicom-tls.ts); absent = plain TCP. */
  tls?: DicomTlsClientConfig;
}

/** A routing rule (issue 11): conditions, destinations, model, frame policy; src/config/routing-rules.ts. */
export type RouteConfig = RoutingRule;

export interface OidcConfig {
  /** Expected `iss`, exactly as the provider writes it; empty = OIDC off. */
  issuer: string;
  /** Expected `aud` (the client id RadScribe is registered as). */
  audience: string;
  /** The provider's JWKS (RFC 7517) URL, e.g. `<issuer>/protocol/openid-connect/certs`. */
  jwksUri: string;
  /** Claim holding the RadScribe role(s), a string or a list (e.g. `roles`, `radscribe_role`). */
  roleClaim: string;
  /** Allowed clock skew for `exp`, `nbf` and `iat` (RFC 7519 §4.1.4). */
  clockToleranceSeconds: number;
  /** Least time between two JWKS fetches for an unknown `kid` (key rotation). */
  jwksCooldownMs: number;
  /** The cached key set is refetched after this long. */
  jwksCacheMaxAgeMs: number;
}

export interface RadScribeConfig {
  dataDir: string;
  database: { url: string; poolSize: number; statementTimeoutMs: number; checkoutTimeoutMs: number };
  http: {
    host: string;
    port: number;
    publicBaseUrl: string;
    requestTimeoutMs: number;
    /** GET /metrics without credentials (a Prometheus scraper on a trusted network); default false. */
    metricsPublic: boolean;
    /** OIDC bearer JWTs (src/http/auth/oidc.ts); an empty issuer turns them off (API tokens only). */
    oidc: OidcConfig;
    /** HTTPS (TLS ≥ 1.2) with these PEM files; empty certFile = plain HTTP. */
    tls: { certFile: string; keyFile: string; clientCaFile: string; requireClientCert: boolean };
    /**
     * Requests per minute per token (429 beyond; 0 = no limit), concurrent STOW-RS uploads (503),
     * and failed authentications per minute per network address (429 beyond; 0 = no limit).
     */
    limits: { requestsPerMinute: number; maxConcurrentUploads: number; authFailuresPerMinute: number };
  };
  ingest: { stabilityWindowMs: number; maxPartBytes: number; maxRequestBytes: number };
  /** Free space kept on the instance store's file system (src/ingest/disk-guard.ts). */
  storage: { reserveBytes: number; watermarkPercent: number };
  /** Removal of received instances after export (src/ingest/retention.ts); no rules: nothing removed. */
  retention: { intervalMs: number; rules: RetentionRule[] };
  model: {
    bundle: string;
    executionProviders: ExecutionProvider[];
    strict: boolean;
    maxNewTokens: number;
    timeoutMs: number;
    /** The inference process is killed when a call runs this long past `timeoutMs`. */
    hardTimeoutGraceMs: number;
    intraOpNumThreads: number;
  };
  imagePrep: { frameTimeoutMs: number; maxHeapMb: number };
  /** Bounds on hostile DICOM content, applied at receipt and before decoding (src/dicom/limits.ts). */
  dicomLimits: DicomLimits;
  selection: { eachImage: string[]; perSeriesSlices: number; multiFrameFrames: number };
  /** DIMSE receiving (src/dimse): Upper Layer limits and the listening AEs; no listeners = disabled. */
  dimse: {
    maxPduLength: number;
    artimMs: number;
    idleMs: number;
    maxAssociations: number;
    listeners: DimseListenerConfig[];
  };
  remoteNodes: RemoteNodeConfig[];
  destinations: DestinationConfig[];
  defaultDestination: string;
  routes: RouteConfig[];
  /** When a study counts as complete (per-source windows, expected series): src/config/completeness.ts. */
  completeness: CompletenessConfig;
  jobs: {
    pollIntervalMs: number;
    leaseMs: number;
    concurrency: number;
    maxAttempts: number;
    backoffBaseMs: number;
    backoffMaxMs: number;
  };
  log: { level: LogLevel };
  /** Audit trail anchoring (issue 12 "Tamper evidence"; src/audit/audit-anchor.ts). */
  audit: { anchor: AuditAnchorConfig; export: AuditExportConfig; retention: AuditRetentionConfig };
}

/**
 * ATNA export (issue 12 "Export to the hospital"; IHE ITI-20 over RFC 5425 syslog-TLS). Empty
 * `syslog.host`: no export. With a host, `caFile` is required; `certFile` and `keyFile` go together.
 */
export interface AuditExportConfig {
  syslog: {
    host: string;
    port: number;
    /** PEM CA bundle the repository's certificate must chain to. */
    caFile: string;
    /** Client certificate and key (mutual TLS, IHE ATNA node authentication); '' = none. */
    certFile: string;
    keyFile: string;
    /** Name the repository's certificate must carry; '' = host. */
    serverName: string;
  };
}

/**
 * Signed anchors of the audit chain head, written outside the database. Empty `directory`: no
 * anchoring. With a directory, `privateKeyFile` is required (`radscribe audit keygen` makes both).
 */
export interface AuditAnchorConfig {
  directory: string;
  intervalSeconds: number;
  /** PKCS#8 PEM Ed25519 private key; readable by the gateway only. */
  privateKeyFile: string;
  /** SPKI PEM public key; what `audit verify --anchors` checks the signatures with. */
  publicKeyFile: string;
}

export const DEFAULT_CONFIG_FILE = path.join(PACKAGE_ROOT, 'config', 'default.yaml');
export const ENV_PREFIX = 'RADSCRIBE_';
/**
 * RADSCRIBE_* variables that are not configuration keys: read directly by the CLI and the test
 * harness. (RADSCRIBE_LOG_LEVEL is applied before the configuration is loaded, see cli/args.ts.)
 */
export const NON_CONFIG_ENV: ReadonlySet<string> = new Set([
  'RADSCRIBE_LOG_LEVEL',
  'RADSCRIBE_IN_NETNS',
  'RADSCRIBE_NO_NETNS',
]);

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
 * Unknown variables are problems, with the variable meant when one is close, so a typo is not
 * silently ignored. The keys walked are those of the merged document, whose base is
 * config/default.yaml: it holds every key outside the lists.
 */
export function applyEnvOverrides(cfg: JsonObject, env: NodeJS.ProcessEnv, problems: string[]): JsonObject {
  let out = cfg;
  for (const [name, raw] of Object.entries(env)) {
    if (!name.startsWith(ENV_PREFIX) || raw === undefined || NON_CONFIG_ENV.has(name)) continue;
    // Secrets referenced by passwordEnv/tokenEnv are read where they are used, not merged here.
    if (/_(PASSWORD|TOKEN|SECRET)$/.test(name)) continue;
    const rest = name.slice(ENV_PREFIX.length);
    const keyPath = resolveEnvPath(out, rest);
    if (!keyPath) {
      // Compared without the common prefix, which would make every name look close.
      const meant = closestKey(rest, envNames(out, ''));
      problems.push(
        `${name}: does not name a configuration key${meant === undefined ? '' : ` (did you mean "${ENV_PREFIX}${meant}"?)`}`,
      );
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

/** Every RADSCRIBE_* name that applyEnvOverrides would accept for `doc` (objects and their keys). */
export function envNames(doc: JsonObject, prefix = ENV_PREFIX): string[] {
  const out: string[] = [];
  for (const [k, v] of Object.entries(doc)) {
    const name = `${prefix}${snake(k)}`;
    out.push(name);
    if (isObject(v)) out.push(...envNames(v, `${name}_`));
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

const MAX_MS = 86_400_000;

function validateTls(v: Validator, o: JsonObject, p: string): RadScribeConfig['http']['tls'] {
  const cfg = {
    certFile: v.str(o, 'certFile', p, true),
    keyFile: v.str(o, 'keyFile', p, true),
    clientCaFile: v.str(o, 'clientCaFile', p, true),
    requireClientCert: v.bool(o, 'requireClientCert', p),
  };
  if (cfg.certFile !== '' && cfg.keyFile === '') v.problem(`${p}.keyFile`, 'is required when http.tls.certFile is set');
  if (cfg.certFile === '' && (cfg.keyFile !== '' || cfg.clientCaFile !== ''))
    v.problem(`${p}.certFile`, 'is required when http.tls.keyFile or clientCaFile is set');
  if (cfg.requireClientCert && cfg.clientCaFile === '')
    v.problem(`${p}.clientCaFile`, 'is required when http.tls.requireClientCert is true');
  return cfg;
}

function validateOidc(v: Validator, o: JsonObject, p: string): OidcConfig {
  const issuer = v.str(o, 'issuer', p, true);
  const audience = v.str(o, 'audience', p, true);
  const jwksUri = v.str(o, 'jwksUri', p, true);
  const cfg: OidcConfig = {
    issuer,
    audience,
    jwksUri,
    roleClaim: v.str(o, 'roleClaim', p),
    clockToleranceSeconds: v.int(o, 'clockToleranceSeconds', p, 0, 600),
    jwksCooldownMs: v.int(o, 'jwksCooldownMs', p, 0, MAX_MS),
    jwksCacheMaxAgeMs: v.int(o, 'jwksCacheMaxAgeMs', p, 1000, MAX_MS),
  };
  if (issuer === '') return cfg;
  if (audience === '') v.problem(`${p}.audience`, 'is required when http.oidc.issuer is set');
  for (const [k, u] of [
    ['issuer', issuer],
    ['jwksUri', jwksUri],
  ] as const) {
    try {
      const url = new URL(u);
      // Keys fetched over plain HTTP could be swapped on the way: only loopback may use http.
      const loopback = ['127.0.0.1', 'localhost', '[::1]'].includes(url.hostname);
      if (url.protocol !== 'https:' && !(url.protocol === 'http:' && loopback))
        v.problem(`${p}.${k}`, 'must be an https URL (http only on loopback)');
    } catch {
      v.problem(`${p}.${k}`, u === '' ? 'is required when http.oidc.issuer is set' : 'must be an absolute URL');
    }
  }
  return cfg;
}

/** Validates the merged document and returns the typed config, or throws one ConfigError with every problem. */
export function validateConfig(doc: JsonObject, problems: string[] = []): RadScribeConfig {
  const v = new Validator(problems);
  v.root(doc);
  const database = v.obj(doc, 'database');
  const http = v.obj(doc, 'http');
  const ingest = v.obj(doc, 'ingest');
  const storage = v.obj(doc, 'storage');
  const retention = v.obj(doc, 'retention');
  const model = v.obj(doc, 'model');
  const imagePrep = v.obj(doc, 'imagePrep');
  const limits = v.obj(doc, 'dicomLimits');
  const selection = v.obj(doc, 'selection');
  const jobs = v.obj(doc, 'jobs');
  const log = v.obj(doc, 'log');
  const audit = v.obj(doc, 'audit');
  const anchor = v.obj(audit, 'anchor', 'audit');
  const auditExport = v.obj(audit, 'export', 'audit');
  const syslog = v.obj(auditExport, 'syslog', 'audit.export');

  const remoteNodes = v.arr(doc, 'remoteNodes').map((n, i) => validateRemoteNode(v, n, `remoteNodes[${i}]`));
  const dimseDoc = v.has(doc, 'dimse') ? v.obj(doc, 'dimse') : {};
  const dimseDefaults = CONFIG_DEFAULTS.dimse;
  const dimse = {
    maxPduLength: v.int(dimseDoc, 'maxPduLength', 'dimse', 4096, 16 * 1024 * 1024, dimseDefaults.maxPduLength),
    artimMs: v.int(dimseDoc, 'artimMs', 'dimse', 100, 3_600_000, dimseDefaults.artimMs),
    idleMs: v.int(dimseDoc, 'idleMs', 'dimse', 100, MAX_MS, dimseDefaults.idleMs),
    maxAssociations: v.int(dimseDoc, 'maxAssociations', 'dimse', 1, 10_000, dimseDefaults.maxAssociations),
    listeners: v
      .arr(dimseDoc, 'listeners', 'dimse')
      .map((l, i) => validateDimseListener(v, l, `dimse.listeners[${i}]`)),
  };
  v.unique(
    dimse.listeners.map((l) => l.aeTitle),
    'dimse.listeners',
    'aeTitle',
  );
  v.unique(
    dimse.listeners.filter((l) => l.port !== 0).map((l) => `${l.host}:${l.port}`),
    'dimse.listeners',
    'host:port',
  );
  checkDimseNodes(
    v,
    remoteNodes,
    dimse.listeners.map((l) => l.aeTitle),
  );
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
  const modelBundle = v.str(model, 'bundle', 'model');
  const routes = validateRoutingRules(v, doc, destNames, path.basename(modelBundle));
  const completeness = validateCompleteness(v, doc, nodeNames);
  v.unique(
    routes.map((r) => r.name),
    'routes',
    'name',
  );
  for (const [i, l] of dimse.listeners.entries())
    if (l.route !== undefined && !routes.some((r) => r.name === l.route))
      v.problem(`dimse.listeners[${i}].route`, `unknown route "${l.route}"`);

  const eps = v.strArr(model, 'executionProviders', 'model');
  const knownEps: readonly string[] = Object.values(ExecutionProvider);
  for (const ep of eps)
    if (!knownEps.includes(ep))
      v.problem('model.executionProviders', `unknown execution provider "${ep}" (${knownEps.join(', ')})`);
  if (eps.length === 0) v.problem('model.executionProviders', 'must list at least one provider');
  const level = v.str(log, 'level', 'log');
  const levels: readonly string[] = Object.values(LogLevel);
  if (!levels.includes(level)) v.problem('log.level', `must be one of ${levels.join(', ')}`);

  const cfg: RadScribeConfig = {
    dataDir: v.str(doc, 'dataDir', ''),
    database: {
      url: v.str(database, 'url', 'database', true),
      poolSize: v.int(database, 'poolSize', 'database', 1, 100),
      // 0 turns the limit off (PostgreSQL statement_timeout semantics).
      statementTimeoutMs: v.int(database, 'statementTimeoutMs', 'database', 0, MAX_MS),
      // At least 1 ms: 0 would make pg-pool wait for a connection forever (the stall of issue 9).
      checkoutTimeoutMs: v.int(database, 'checkoutTimeoutMs', 'database', 1, MAX_MS),
    },
    http: {
      host: v.str(http, 'host', 'http'),
      port: v.int(http, 'port', 'http', 0, 65535),
      publicBaseUrl: v.url(http, 'publicBaseUrl', 'http', true),
      // 0 = no limit (node:http server.requestTimeout).
      requestTimeoutMs: v.int(http, 'requestTimeoutMs', 'http', 0, MAX_MS),
      metricsPublic: v.bool(http, 'metricsPublic', 'http'),
      oidc: validateOidc(v, v.obj(http, 'oidc', 'http'), 'http.oidc'),
      tls: validateTls(v, v.obj(http, 'tls', 'http'), 'http.tls'),
      limits: {
        requestsPerMinute: v.int(v.obj(http, 'limits', 'http'), 'requestsPerMinute', 'http.limits', 0, 6_000_000),
        maxConcurrentUploads: v.int(v.obj(http, 'limits', 'http'), 'maxConcurrentUploads', 'http.limits', 0, 100_000),
        authFailuresPerMinute: v.int(
          v.obj(http, 'limits', 'http'),
          'authFailuresPerMinute',
          'http.limits',
          0,
          1_000_000,
        ),
      },
    },
    ingest: {
      stabilityWindowMs: v.int(ingest, 'stabilityWindowMs', 'ingest', 0, MAX_MS),
      maxPartBytes: v.int(ingest, 'maxPartBytes', 'ingest', 1024, Number.MAX_SAFE_INTEGER),
      maxRequestBytes: v.int(ingest, 'maxRequestBytes', 'ingest', 1024, Number.MAX_SAFE_INTEGER),
    },
    storage: {
      reserveBytes: v.int(storage, 'reserveBytes', 'storage', 0, Number.MAX_SAFE_INTEGER),
      // Below 100: a watermark of 100 % would refuse everything.
      watermarkPercent: v.num(storage, 'watermarkPercent', 'storage', 0, 99),
    },
    retention: {
      intervalMs: v.int(retention, 'intervalMs', 'retention', 1000, 7 * MAX_MS),
      rules: v
        .arr(retention, 'rules', 'retention')
        .map((r, i) => validateRetentionRule(v, r, `retention.rules[${i}]`, new Set(remoteNodes.map((n) => n.name)))),
    },
    model: {
      bundle: modelBundle,
      executionProviders: eps as ExecutionProvider[],
      strict: v.bool(model, 'strict', 'model'),
      maxNewTokens: v.int(model, 'maxNewTokens', 'model', 1, 4096),
      timeoutMs: v.int(model, 'timeoutMs', 'model', 100, 3_600_000),
      hardTimeoutGraceMs: v.int(model, 'hardTimeoutGraceMs', 'model', 0, 3_600_000),
      intraOpNumThreads: v.int(model, 'intraOpNumThreads', 'model', 0, 256),
    },
    imagePrep: {
      frameTimeoutMs: v.int(imagePrep, 'frameTimeoutMs', 'imagePrep', 100, 3_600_000),
      maxHeapMb: v.int(imagePrep, 'maxHeapMb', 'imagePrep', 64, 65_536),
    },
    dicomLimits: {
      maxInflatedBytes: v.int(limits, 'maxInflatedBytes', 'dicomLimits', 1024, Number.MAX_SAFE_INTEGER),
      maxInflationRatio: v.int(limits, 'maxInflationRatio', 'dicomLimits', 2, 1_000_000),
      inflationRatioFloorBytes: v.int(limits, 'inflationRatioFloorBytes', 'dicomLimits', 0, Number.MAX_SAFE_INTEGER),
      maxSequenceDepth: v.int(limits, 'maxSequenceDepth', 'dicomLimits', 1, 10_000),
      maxElements: v.int(limits, 'maxElements', 'dicomLimits', 16, 100_000_000),
      maxDecodedFrameBytes: v.int(limits, 'maxDecodedFrameBytes', 'dicomLimits', 1024, Number.MAX_SAFE_INTEGER),
      maxDecodedInstanceBytes: v.int(limits, 'maxDecodedInstanceBytes', 'dicomLimits', 1024, Number.MAX_SAFE_INTEGER),
    },
    selection: {
      eachImage: v.strArr(selection, 'eachImage', 'selection'),
      perSeriesSlices: v.int(selection, 'perSeriesSlices', 'selection', 1, 64),
      multiFrameFrames: v.int(selection, 'multiFrameFrames', 'selection', 1, 64),
    },
    dimse,
    remoteNodes,
    destinations,
    defaultDestination,
    routes,
    completeness,
    jobs: {
      pollIntervalMs: v.int(jobs, 'pollIntervalMs', 'jobs', 10, 3_600_000),
      leaseMs: v.int(jobs, 'leaseMs', 'jobs', 1000, MAX_MS),
      concurrency: v.int(jobs, 'concurrency', 'jobs', 1, 64),
      maxAttempts: v.int(jobs, 'maxAttempts', 'jobs', 1, 100),
      backoffBaseMs: v.int(jobs, 'backoffBaseMs', 'jobs', 0, MAX_MS),
      backoffMaxMs: v.int(jobs, 'backoffMaxMs', 'jobs', 0, MAX_MS),
    },
    log: { level: level as LogLevel },
    audit: {
      anchor: {
        directory: v.str(anchor, 'directory', 'audit.anchor', true),
        intervalSeconds: v.int(anchor, 'intervalSeconds', 'audit.anchor', 1, 7 * 86_400),
        privateKeyFile: v.str(anchor, 'privateKeyFile', 'audit.anchor', true),
        publicKeyFile: v.str(anchor, 'publicKeyFile', 'audit.anchor', true),
      },
      export: {
        syslog: {
          host: v.str(syslog, 'host', 'audit.export.syslog', true),
          port: v.int(syslog, 'port', 'audit.export.syslog', 1, 65_535),
          caFile: v.str(syslog, 'caFile', 'audit.export.syslog', true),
          certFile: v.str(syslog, 'certFile', 'audit.export.syslog', true),
          keyFile: v.str(syslog, 'keyFile', 'audit.export.syslog', true),
          serverName: v.str(syslog, 'serverName', 'audit.export.syslog', true),
        },
      },
      retention: validateAuditRetention(v, audit, {
        privateKeyFile: v.str(anchor, 'privateKeyFile', 'audit.anchor', true),
      }),
    },
  };
  if (cfg.dataDir === '') v.problem('dataDir', 'must not be empty');
  if (cfg.dicomLimits.maxDecodedInstanceBytes < cfg.dicomLimits.maxDecodedFrameBytes)
    v.problem('dicomLimits.maxDecodedInstanceBytes', 'must not be less than dicomLimits.maxDecodedFrameBytes');
  v.unique(
    cfg.retention.rules.map((r) => r.name),
    'retention.rules',
    'name',
  );
  if (cfg.audit.anchor.directory !== '' && cfg.audit.anchor.privateKeyFile === '')
    v.problem('audit.anchor.privateKeyFile', 'is required when audit.anchor.directory is set');
  const sl = cfg.audit.export.syslog;
  if (sl.host !== '' && sl.caFile === '')
    v.problem('audit.export.syslog.caFile', 'is required when audit.export.syslog.host is set');
  if ((sl.certFile === '') !== (sl.keyFile === ''))
    v.problem('audit.export.syslog', 'certFile and keyFile must be given together');
  if (cfg.jobs.backoffMaxMs < cfg.jobs.backoffBaseMs)
    v.problem('jobs.backoffMaxMs', 'must not be less than jobs.backoffBaseMs');
  v.reportUnknownKeys();
  if (problems.length > 0) throw new ConfigError(problems);
  return cfg;
}

function validateRemoteNode(v: Validator, n: unknown, p: string): RemoteNodeConfig {
  const d = REMOTE_NODE_DEFAULTS;
  const o = v.asObj(n, p);
  const name = v.str(o, 'name', p);
  const dimse = v.has(o, 'dimse') ? validateDimseNode(v, v.obj(o, 'dimse', p), `${p}.dimse`) : undefined;
  // A DIMSE-only node (a PACS without DICOMweb) has no baseUrl; its QIDO poller cannot be enabled.
  const baseUrl = dimse && !v.has(o, 'baseUrl') ? '' : v.url(o, 'baseUrl', p);
  const auth = v.has(o, 'auth') ? v.obj(o, 'auth', p) : {};
  const ap = `${p}.auth`;
  const type = v.has(auth, 'type') ? v.str(auth, 'type', ap) : RemoteAuthType.None;
  const types: readonly string[] = Object.values(RemoteAuthType);
  if (!types.includes(type)) v.problem(`${ap}.type`, `must be one of ${types.join(', ')}`);
  const a: RemoteNodeAuthConfig = { type: type as RemoteAuthType };
  // Every auth key is read whatever the type, so one that the type does not use is named as such
  // rather than as unknown.
  const only = (k: string, want: RemoteAuthType): string | undefined => {
    if (type === want) return v.str(auth, k, ap);
    if (v.has(auth, k)) v.problem(`${ap}.${k}`, `only used with auth type ${want}`);
    return undefined;
  };
  const username = only('username', RemoteAuthType.Basic);
  const passwordEnv = only('passwordEnv', RemoteAuthType.Basic);
  const tokenEnv = only('tokenEnv', RemoteAuthType.Bearer);
  if (username !== undefined) a.username = username;
  if (passwordEnv !== undefined) a.passwordEnv = passwordEnv;
  if (tokenEnv !== undefined) a.tokenEnv = tokenEnv;

  const poll = v.has(o, 'poll') ? v.obj(o, 'poll', p) : {};
  const pp = `${p}.poll`;
  const query = v.has(poll, 'query') ? v.obj(poll, 'query', pp, { freeForm: true }) : {};
  const q: Record<string, string> = {};
  for (const [k, val] of Object.entries(query)) {
    if (typeof val !== 'string' && typeof val !== 'number') v.problem(`${pp}.query.${k}`, 'must be a string');
    else q[k] = String(val);
  }
  const backoff = v.has(poll, 'backoff') ? v.obj(poll, 'backoff', pp) : {};
  const bp = `${pp}.backoff`;
  const b: BackoffConfig = {
    initialMs: v.int(backoff, 'initialMs', bp, 10, MAX_MS, d.poll.backoff.initialMs),
    maxMs: v.int(backoff, 'maxMs', bp, 10, MAX_MS, d.poll.backoff.maxMs),
    factor: v.num(backoff, 'factor', bp, 1, 10, d.poll.backoff.factor),
  };
  if (b.maxMs < b.initialMs) v.problem(`${bp}.maxMs`, `must not be less than ${bp}.initialMs`);
  const transferSyntax = v.has(poll, 'transferSyntax') ? v.str(poll, 'transferSyntax', pp) : undefined;
  if (baseUrl === '' && v.has(o, 'poll') && v.bool(v.obj(o, 'poll', p), 'enabled', `${p}.poll`, false))
    v.problem(`${p}.poll.enabled`, 'the QIDO-RS poller needs a baseUrl');
  return {
    name,
    baseUrl,
    ...(dimse ? { dimse } : {}),
    auth: a,
    timeoutMs: v.int(o, 'timeoutMs', p, 100, 3_600_000, d.timeoutMs),
    storeTimeoutMs: v.int(o, 'storeTimeoutMs', p, 100, 3_600_000, d.storeTimeoutMs),
    poll: {
      enabled: v.bool(poll, 'enabled', pp, d.poll.enabled),
      intervalMs: v.int(poll, 'intervalMs', pp, 100, MAX_MS, d.poll.intervalMs),
      lookbackDays: v.int(poll, 'lookbackDays', pp, 0, 36500, d.poll.lookbackDays),
      pageSize: v.int(poll, 'pageSize', pp, 1, 10_000, d.poll.pageSize),
      maxPages: v.int(poll, 'maxPages', pp, 1, 10_000, d.poll.maxPages),
      backoff: b,
      maxRetrieveAttempts: v.int(poll, 'maxRetrieveAttempts', pp, 1, 1000, d.poll.maxRetrieveAttempts),
      query: q,
      ...(transferSyntax === undefined ? {} : { transferSyntax }),
      ...validateQidoPollWindow(v, poll, pp),
    },
  };
}

/** One `dimse.listeners[]` item: a local AE title on a port (PS3.5 AE VR rules for every title). */
function validateDimseListener(v: Validator, l: unknown, p: string): DimseListenerConfig {
  const o = v.asObj(l, p);
  const aeTitle = v.str(o, 'aeTitle', p);
  const why = aeTitle === '' ? undefined : aeTitleProblem(aeTitle);
  if (why) v.problem(`${p}.aeTitle`, `not a valid AE title: ${why}`);
  const port = v.int(o, 'port', p, 0, 65_535);
  const host = v.has(o, 'host') ? v.str(o, 'host', p) : '127.0.0.1';
  let allowed: string[] | undefined;
  if (v.has(o, 'allowedCallingAeTitles')) {
    allowed = v.strArr(o, 'allowedCallingAeTitles', p);
    if (allowed.length === 0)
      v.problem(`${p}.allowedCallingAeTitles`, 'must list at least one (leave the key out for any)');
    allowed.forEach((t, i) => {
      const w = aeTitleProblem(t);
      if (w) v.problem(`${p}.allowedCallingAeTitles[${i}]`, `not a valid AE title: ${w}`);
    });
  }
  const tls = v.has(o, 'tls') ? validateDimseListenerTls(v, v.obj(o, 'tls', p), `${p}.tls`) : undefined;
  const policy = validateListenerPolicy(v, o, p);
  return {
    aeTitle: aeTitle.trim(),
    port,
    host,
    ...(allowed ? { allowedCallingAeTitles: allowed.map((t) => t.trim()) } : {}),
    ...policy,
    ...(tls ? { tls } : {}),
  };
}

/**
 * One list item validated alone by the same function as in the file (the admin API, src/http/admin):
 * every problem, with paths under `at`, and unknown keys named as in the file.
 */
export function validateConfigItem(
  kind: 'dimseListener',
  item: unknown,
  at: string,
): ValidatedItem<DimseListenerConfig>;
export function validateConfigItem(kind: 'remoteNode', item: unknown, at: string): ValidatedItem<RemoteNodeConfig>;
export function validateConfigItem(
  kind: 'dimseListener' | 'remoteNode',
  item: unknown,
  at: string,
): ValidatedItem<DimseListenerConfig | RemoteNodeConfig> {
  const problems: string[] = [];
  const v = new Validator(problems);
  const value = kind === 'dimseListener' ? validateDimseListener(v, item, at) : validateRemoteNode(v, item, at);
  v.reportUnknownKeys();
  return { value, problems };
}
export interface ValidatedItem<T> {
  readonly value: T;
  readonly problems: readonly string[];
}

function tlsMinVersion(v: Validator, o: JsonObject, p: string): TlsMinVersion {
  const versions: readonly string[] = Object.values(TlsMinVersion);
  const s = v.has(o, 'minVersion') ? v.str(o, 'minVersion', p) : DEFAULT_TLS_MIN_VERSION;
  // BCP 195 (RFC 8996): nothing below TLS 1.2.
  if (!versions.includes(s)) v.problem(`${p}.minVersion`, `must be one of ${versions.join(', ')}`);
  return s as TlsMinVersion;
}

/**
 * `dimse.listeners[].tls` (PS3.15 B.1/B.9): certificate and key are required; so is the CA bundle
 * when client certificates are required, the default (B.1 authenticates both ends).
 */
function validateDimseListenerTls(v: Validator, o: JsonObject, p: string): DicomTlsListenerConfig {
  const requireClientCert = v.bool(o, 'requireClientCert', p, DEFAULT_REQUIRE_CLIENT_CERT);
  const caFile = v.str(o, 'caFile', p, true);
  if (requireClientCert && caFile === '') v.problem(`${p}.caFile`, 'is required when requireClientCert is true');
  return {
    certFile: v.str(o, 'certFile', p),
    keyFile: v.str(o, 'keyFile', p),
    caFile,
    requireClientCert,
    minVersion: tlsMinVersion(v, o, p),
  };
}

/** `destinations[].tls` of a dimse destination: CA required; certificate and key go together. */
function validateDimseClientTls(v: Validator, o: JsonObject, p: string): DicomTlsClientConfig {
  const certFile = v.str(o, 'certFile', p, true);
  const keyFile = v.str(o, 'keyFile', p, true);
  if (certFile !== '' && keyFile === '') v.problem(`${p}.keyFile`, 'is required when certFile is set');
  if (keyFile !== '' && certFile === '') v.problem(`${p}.certFile`, 'is required when keyFile is set');
  const serverName = v.str(o, 'serverName', p, true);
  return {
    caFile: v.str(o, 'caFile', p),
    ...(certFile ? { certFile } : {}),
    ...(keyFile ? { keyFile } : {}),
    ...(serverName ? { serverName } : {}),
    minVersion: tlsMinVersion(v, o, p),
  };
}

/** AE title (PS3.5 Table 6.2-1 AE): 1–16 characters of the default repertoire, no backslash or control characters, not all spaces. */
function isAeTitle(s: string): boolean {
  return aeTitleProblem(s) === undefined;
}

/**
 * One `retention.rules[]` item. Each source list belongs to one `via` (calling AE titles to C-STORE,
 * remote nodes to WADO-RS, users to STOW-RS) and is named as misplaced under another.
 */
function validateRetentionRule(v: Validator, r: unknown, p: string, nodes: ReadonlySet<string>): RetentionRule {
  const o = v.asObj(r, p);
  const name = v.str(o, 'name', p);
  const via = v.str(o, 'via', p);
  const vias: readonly string[] = Object.values(ReceivedVia);
  if (via !== '' && !vias.includes(via)) v.problem(`${p}.via`, `must be one of ${vias.join(', ')}`);
  const list = (k: string, want: ReceivedVia): string[] | undefined => {
    if (!v.has(o, k)) return undefined;
    const xs = v.strArr(o, k, p);
    if (via !== want) v.problem(`${p}.${k}`, `only used with via ${want}`);
    else if (xs.length === 0) v.problem(`${p}.${k}`, 'must list at least one (leave the key out for any)');
    return xs;
  };
  const callingAeTitles = list('callingAeTitles', ReceivedVia.CStore);
  for (const ae of callingAeTitles ?? [])
    if (!isAeTitle(ae)) v.problem(`${p}.callingAeTitles`, `"${ae}" is not an AE title (1-16 characters, no \\)`);
  const remoteNodes = list('remoteNodes', ReceivedVia.WadoRs);
  for (const n of remoteNodes ?? []) if (!nodes.has(n)) v.problem(`${p}.remoteNodes`, `unknown remote node "${n}"`);
  const users = list('users', ReceivedVia.StowRs);
  const failedAfterDays = v.has(o, 'failedAfterDays') ? v.num(o, 'failedAfterDays', p, 0, 36_500) : undefined;
  return {
    name,
    via: via as ReceivedVia,
    ...(callingAeTitles ? { callingAeTitles } : {}),
    ...(remoteNodes ? { remoteNodes } : {}),
    ...(users ? { users } : {}),
    exportedAfterDays: v.num(o, 'exportedAfterDays', p, 0, 36_500),
    ...(failedAfterDays === undefined ? {} : { failedAfterDays }),
  };
}

function validateDestination(v: Validator, d: unknown, p: string, nodes: ReadonlySet<string>): DestinationConfig {
  const o = v.asObj(d, p);
  const name = v.str(o, 'name', p);
  const type = v.str(o, 'type', p);
  const profiles: readonly string[] = Object.values(SrProfile);
  const srProfile = v.has(o, 'srProfile') ? v.str(o, 'srProfile', p) : SrProfile.Report;
  if (!profiles.includes(srProfile)) v.problem(`${p}.srProfile`, `must be one of ${profiles.join(', ')}`);
  const common = {
    name,
    srProfile: srProfile as SrProfile,
    pdfCompanion: v.bool(o, 'pdfCompanion', p, false),
  };
  // Both type-specific keys are read whatever the type, so the wrong one is named as such.
  const only = (k: string, want: DestinationType): string => {
    if (type === want) return v.str(o, k, p);
    if (v.has(o, k)) v.problem(`${p}.${k}`, `only used with type ${want}`);
    return '';
  };
  const folderPath = only('path', DestinationType.Folder);
  const node = only('node', DestinationType.StowRs);
  const verifyModes: readonly string[] = Object.values(VerifyStored);
  let verifyStored: string = DEFAULT_STOW_VERIFY;
  if (v.has(o, 'verifyStored')) {
    if (type === DestinationType.StowRs) verifyStored = v.str(o, 'verifyStored', p);
    else v.problem(`${p}.verifyStored`, `only used with type ${DestinationType.StowRs}`);
  }
  if (!verifyModes.includes(verifyStored)) v.problem(`${p}.verifyStored`, `must be one of ${verifyModes.join(', ')}`);
  const dimse = dimseDestination(v, o, p, type === DestinationType.Dimse);
  if (type === DestinationType.Folder) return { ...common, type, path: folderPath };
  if (type === DestinationType.StowRs) {
    if (!nodes.has(node)) v.problem(`${p}.node`, `unknown remote node "${node}"`);
    return { ...common, type, node, verifyStored: verifyStored as VerifyStored };
  }
  if (type === DestinationType.Dimse && dimse) return { ...common, type, ...dimse };
  if (type !== '') v.problem(`${p}.type`, `must be one of ${Object.values(DestinationType).join(', ')}`);
  return { ...common, type: 'folder', path: '' };
}

/**
 * The keys of a `dimse` destination; read whatever the type, so one on another type is named as
 * misplaced. AE titles follow PS3.5 Table 6.2-1 (ae-title.ts); timeouts default to the SCU's.
 */
function dimseDestination(
  v: Validator,
  o: JsonObject,
  p: string,
  isDimse: boolean,
): DimseDestinationConfig | undefined {
  const keys = [
    'host',
    'port',
    'calledAeTitle',
    'callingAeTitle',
    'connectTimeoutMs',
    'associationTimeoutMs',
    'responseTimeoutMs',
    'tls',
  ];
  if (!isDimse) {
    for (const k of keys) if (v.has(o, k)) v.problem(`${p}.${k}`, `only used with type ${DestinationType.Dimse}`);
    return undefined;
  }
  const ae = (k: string, dflt?: string): string => {
    const t = dflt !== undefined && !v.has(o, k) ? dflt : v.str(o, k, p);
    const why = t === '' ? undefined : aeTitleProblem(t);
    if (why) v.problem(`${p}.${k}`, `not a valid AE title: ${why}`);
    return t.trim();
  };
  const t = DEFAULT_STORE_SCU_TIMEOUTS;
  const tls = v.has(o, 'tls') ? validateDimseClientTls(v, v.obj(o, 'tls', p), `${p}.tls`) : undefined;
  return {
    host: v.str(o, 'host', p),
    port: v.int(o, 'port', p, 1, 65_535),
    calledAeTitle: ae('calledAeTitle'),
    callingAeTitle: ae('callingAeTitle', 'RADSCRIBE'),
    connectTimeoutMs: v.int(o, 'connectTimeoutMs', p, 100, 3_600_000, t.connectMs),
    associationTimeoutMs: v.int(o, 'associationTimeoutMs', p, 100, 3_600_000, t.artimMs),
    responseTimeoutMs: v.int(o, 'responseTimeoutMs', p, 100, 3_600_000, t.dimseMs),
    ...(tls ? { tls } : {}),
  };
}

/**
 * Collects problems instead of throwing, so every error is reported at once. It also remembers
 * which keys of each mapping it read: a key nobody read is unknown (reportUnknownKeys), so the set
 * of accepted keys is exactly the set validated, with no second list to drift from it.
 */
export class Validator {
  readonly #problems: string[];
  /** Mappings seen, in document order, with their path and the keys read from them. */
  readonly #seen = new Map<JsonObject, { path: string; read: Set<string>; freeForm: boolean }>();

  constructor(problems: string[]) {
    this.#problems = problems;
  }
  problem(p: string, msg: string): void {
    this.#problems.push(`${p}: ${msg}`);
  }
  private key(parent: string | undefined, k: string): string {
    return parent ? `${parent}.${k}` : k;
  }
  /** The top-level document: its keys are reported without a leading path. */
  root(doc: JsonObject): void {
    this.#seen.set(doc, { path: '', read: new Set(), freeForm: false });
  }
  private get(o: JsonObject, k: string): Json | undefined {
    this.#seen.get(o)?.read.add(k);
    return o[k];
  }
  /** True when `k` is present (not null); marks it read. */
  has(o: JsonObject, k: string): boolean {
    const v = this.get(o, k);
    return v !== undefined && v !== null;
  }
  /** `freeForm`: a map whose keys are data (QIDO match keys), not configuration keys. */
  asObj(v: unknown, p: string, opts: { freeForm?: boolean } = {}): JsonObject {
    if (isObject(v)) {
      if (!this.#seen.has(v)) this.#seen.set(v, { path: p, read: new Set(), freeForm: opts.freeForm ?? false });
      return v;
    }
    this.problem(p, 'must be a mapping');
    return {};
  }
  obj(o: JsonObject, k: string, parent?: string, opts: { freeForm?: boolean } = {}): JsonObject {
    return this.asObj(this.get(o, k), this.key(parent, k), opts);
  }
  arr(o: JsonObject, k: string, parent?: string): Json[] {
    const v = this.get(o, k);
    if (v === undefined || v === null) return [];
    if (Array.isArray(v)) return v;
    this.problem(this.key(parent, k), 'must be a list');
    return [];
  }
  str(o: JsonObject, k: string, parent?: string, allowEmpty = false): string {
    const v = this.get(o, k);
    if (typeof v === 'string' && (allowEmpty || v.length > 0)) return v;
    if (v === undefined || v === null) {
      if (allowEmpty) return '';
      this.problem(this.key(parent, k), 'is required');
    } else this.problem(this.key(parent, k), allowEmpty ? 'must be a string' : 'must be a non-empty string');
    return '';
  }
  strArr(o: JsonObject, k: string, parent?: string): string[] {
    const v = this.get(o, k);
    if (Array.isArray(v) && v.every((x) => typeof x === 'string')) return v as string[];
    this.problem(this.key(parent, k), 'must be a list of strings');
    return [];
  }
  /** An integer in [min, max]; with `dflt`, an absent key takes it (list items, which YAML defaults cannot reach). */
  int(o: JsonObject, k: string, parent: string | undefined, min: number, max: number, dflt?: number): number {
    const v = this.get(o, k);
    if ((v === undefined || v === null) && dflt !== undefined) return dflt;
    if (typeof v === 'number' && Number.isInteger(v) && v >= min && v <= max) return v;
    this.problem(this.key(parent, k), `must be an integer from ${min} to ${max}`);
    return min;
  }
  num(o: JsonObject, k: string, parent: string | undefined, min: number, max: number, dflt?: number): number {
    const v = this.get(o, k);
    if ((v === undefined || v === null) && dflt !== undefined) return dflt;
    if (typeof v === 'number' && Number.isFinite(v) && v >= min && v <= max) return v;
    this.problem(this.key(parent, k), `must be a number from ${min} to ${max}`);
    return min;
  }
  bool(o: JsonObject, k: string, parent?: string, dflt?: boolean): boolean {
    const v = this.get(o, k);
    if ((v === undefined || v === null) && dflt !== undefined) return dflt;
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
      if (n !== '' && seen.has(n)) this.problem(p, `duplicate ${field} "${n}"`);
      seen.add(n);
    }
  }
  /** `modle: unknown key (did you mean "model"?)` for every key no validation step read. */
  reportUnknownKeys(): void {
    for (const [o, { path: p, read, freeForm }] of this.#seen) {
      if (freeForm) continue;
      for (const k of Object.keys(o))
        if (!read.has(k)) this.problem(this.key(p, k), `unknown key${didYouMean(k, read)}`);
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
    destinations: cfg.destinations.map((d) =>
      d.type === 'folder'
        ? { ...d, path: abs(d.path) }
        : d.type === 'dimse' && d.tls
          ? {
              ...d,
              tls: {
                ...d.tls,
                caFile: abs(d.tls.caFile),
                ...(d.tls.certFile ? { certFile: abs(d.tls.certFile) } : {}),
                ...(d.tls.keyFile ? { keyFile: abs(d.tls.keyFile) } : {}),
              },
            }
          : d,
    ),
    dimse: {
      ...cfg.dimse,
      listeners: cfg.dimse.listeners.map((l) =>
        l.tls
          ? {
              ...l,
              tls: {
                ...l.tls,
                certFile: abs(l.tls.certFile),
                keyFile: abs(l.tls.keyFile),
                caFile: l.tls.caFile && abs(l.tls.caFile),
              },
            }
          : l,
      ),
    },
    audit: {
      anchor: {
        ...cfg.audit.anchor,
        // Empty stays empty (= not configured).
        directory: cfg.audit.anchor.directory && abs(cfg.audit.anchor.directory),
        privateKeyFile: cfg.audit.anchor.privateKeyFile && abs(cfg.audit.anchor.privateKeyFile),
        publicKeyFile: cfg.audit.anchor.publicKeyFile && abs(cfg.audit.anchor.publicKeyFile),
      },
      export: {
        syslog: {
          ...cfg.audit.export.syslog,
          caFile: cfg.audit.export.syslog.caFile && abs(cfg.audit.export.syslog.caFile),
          certFile: cfg.audit.export.syslog.certFile && abs(cfg.audit.export.syslog.certFile),
          keyFile: cfg.audit.export.syslog.keyFile && abs(cfg.audit.export.syslog.keyFile),
        },
      },
      retention: {
        ...cfg.audit.retention,
        archiveDirectory: cfg.audit.retention.archiveDirectory && abs(cfg.audit.retention.archiveDirectory),
      },
    },
  };
}

/** The config as it may be shown or audited: no secrets (passwords are only ever env var names). */
export function redactedConfig(cfg: RadScribeConfig): RadScribeConfig {
  return { ...cfg, database: { ...cfg.database, url: cfg.database.url.replace(/\/\/([^:@/]+):[^@/]*@/, '//$1:***@') } };
}
