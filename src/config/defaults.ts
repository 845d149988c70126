import { DEFAULT_ANCHOR_INTERVAL_SECONDS } from '../audit/audit-anchor.js';
import { DEFAULT_CHECKOUT_TIMEOUT_MS, DEFAULT_POOL_SIZE, DEFAULT_STATEMENT_TIMEOUT_MS } from '../db/pool.js';
import { DEFAULT_DICOM_LIMITS } from '../dicom/limits.js';
import { DEFAULT_ASSOCIATION_TIMEOUTS, DEFAULT_MAX_ASSOCIATIONS } from '../dimse/association.js';
import { DEFAULT_MAX_PDU_LENGTH } from '../dimse/pdu.js';
import { DEFAULT_HARD_TIMEOUT_GRACE_MS } from '../inference/inference-client.js';
import { DEFAULT_EXECUTION_PROVIDERS } from '../inference/vision-language-model.js';
import { DEFAULT_STORAGE_RESERVE_BYTES, DEFAULT_STORAGE_WATERMARK_PERCENT } from '../ingest/disk-guard.js';
import { DEFAULT_RETENTION_INTERVAL_MS } from '../ingest/retention.js';
import { DEFAULT_BACKOFF_BASE_MS, DEFAULT_BACKOFF_MAX_MS, DEFAULT_MAX_ATTEMPTS } from '../jobs/job-queue.js';
import {
  DEFAULT_CONCURRENCY,
  DEFAULT_LEASE_MS,
  DEFAULT_POLL_INTERVAL_MS,
  DEFAULT_STABILITY_WINDOW_MS,
} from '../jobs/worker.js';
import { DEFAULT_DICOMWEB_STORE_TIMEOUT_MS, DEFAULT_DICOMWEB_TIMEOUT_MS } from '../pacs/dicomweb-client.js';
import {
  DEFAULT_MAX_RETRIEVE_ATTEMPTS,
  DEFAULT_QIDO_BACKOFF,
  DEFAULT_QIDO_LOOKBACK_DAYS,
  DEFAULT_QIDO_MAX_PAGES,
  DEFAULT_QIDO_PAGE_SIZE,
  DEFAULT_QIDO_POLL_INTERVAL_MS,
} from '../pacs/qido-poller.js';
import { DEFAULT_STOW_LIMITS } from '../pacs/stow-router.js';
import { DEFAULT_MULTI_FRAME_FRAMES } from '../pipeline/frame-selection.js';
import { DEFAULT_FRAME_TIMEOUT_MS, DEFAULT_WORKER_MEMORY_MB } from '../pipeline/image-prep-client.js';
import { AUDIT_RETENTION_DEFAULTS } from './audit-retention.js';
import { QIDO_POLL_WINDOW_DEFAULTS } from './qido-poll.js';

/**
 * Every configuration default, in one place (issue 8). A value whose consumer already exports a
 * default (STYLE rule 8: options objects with exported defaults) is that constant; only values no
 * consumer owns are declared here. config/default.yaml must equal CONFIG_DEFAULTS key for key
 * (test/unit/config.test.ts checks it), so the file an operator reads is the truth, and the code that
 * runs without a config file (tests, `new JobWorker({...})`) behaves the same.
 */

/** Received instances, the embedded database, the outbox and temporary files. */
export const DEFAULT_DATA_DIR = './var';
export const DEFAULT_HTTP_HOST = '127.0.0.1';
export const DEFAULT_HTTP_PORT = 8080;
/**
 * Whole-request limit of the HTTP server (node:http `server.requestTimeout`; 0 = none). Node's own
 * default is 300 s; a multi-gigabyte STOW-RS upload over a slow link needs more, so it is a key.
 */
export const DEFAULT_HTTP_REQUEST_TIMEOUT_MS = 300_000;
/** The bundled TEST FIXTURE (random weights): a hospital points model.bundle at a real bundle. */
export const DEFAULT_MODEL_BUNDLE = 'test/fixtures/models/tiny-mllama';
export const DEFAULT_MAX_NEW_TOKENS = 48;
/** Soft limit of one describe call: generation stops between steps and keeps the partial text. */
export const DEFAULT_MODEL_TIMEOUT_MS = 120_000;
/** ONNX Runtime intra-op threads; 0 = ORT's choice (one per core). */
export const DEFAULT_INTRA_OP_NUM_THREADS = 2;
/** Projection modalities (PS3.3 C.7.3.1.1.1): every image is a separate view and is described. */
export const DEFAULT_EACH_IMAGE_MODALITIES: readonly string[] = [
  'CR',
  'DX',
  'MG',
  'RG',
  'IO',
  'PX',
  'XA',
  'RF',
  'US',
  'OT',
  'SC',
];
export const DEFAULT_PER_SERIES_SLICES = 1;
export const DEFAULT_DESTINATION_NAME = 'outbox';
export const DEFAULT_LOG_LEVEL = 'info';

/** Defaults of one `remoteNodes[]` item: list items cannot be merged from default.yaml. */
export const REMOTE_NODE_DEFAULTS = {
  timeoutMs: DEFAULT_DICOMWEB_TIMEOUT_MS,
  storeTimeoutMs: DEFAULT_DICOMWEB_STORE_TIMEOUT_MS,
  poll: {
    enabled: false,
    intervalMs: DEFAULT_QIDO_POLL_INTERVAL_MS,
    lookbackDays: DEFAULT_QIDO_LOOKBACK_DAYS,
    pageSize: DEFAULT_QIDO_PAGE_SIZE,
    maxPages: DEFAULT_QIDO_MAX_PAGES,
    backoff: { ...DEFAULT_QIDO_BACKOFF },
    maxRetrieveAttempts: DEFAULT_MAX_RETRIEVE_ATTEMPTS,
    // The incremental window's keys (src/config/qido-poll.ts).
    ...QIDO_POLL_WINDOW_DEFAULTS,
  },
} as const;

/** What config/default.yaml holds, as data (JSON-shaped, like the parsed YAML). */
export const CONFIG_DEFAULTS = {
  dataDir: DEFAULT_DATA_DIR,
  database: {
    url: '',
    poolSize: DEFAULT_POOL_SIZE,
    statementTimeoutMs: DEFAULT_STATEMENT_TIMEOUT_MS,
    checkoutTimeoutMs: DEFAULT_CHECKOUT_TIMEOUT_MS,
  },
  http: {
    host: DEFAULT_HTTP_HOST,
    port: DEFAULT_HTTP_PORT,
    publicBaseUrl: '',
    requestTimeoutMs: DEFAULT_HTTP_REQUEST_TIMEOUT_MS,
    metricsPublic: false,
    oidc: {
      issuer: '',
      audience: '',
      jwksUri: '',
      roleClaim: 'roles',
      clockToleranceSeconds: 60,
      jwksCooldownMs: 30_000,
      jwksCacheMaxAgeMs: 600_000,
    },
    tls: { certFile: '', keyFile: '', clientCaFile: '', requireClientCert: false },
    limits: { requestsPerMinute: 6000, maxConcurrentUploads: 128, authFailuresPerMinute: 30 },
  },
  ingest: {
    stabilityWindowMs: DEFAULT_STABILITY_WINDOW_MS,
    maxPartBytes: DEFAULT_STOW_LIMITS.maxPartBytes,
    maxRequestBytes: DEFAULT_STOW_LIMITS.maxRequestBytes,
  },
  storage: { reserveBytes: DEFAULT_STORAGE_RESERVE_BYTES, watermarkPercent: DEFAULT_STORAGE_WATERMARK_PERCENT },
  retention: { intervalMs: DEFAULT_RETENTION_INTERVAL_MS, rules: [] },
  model: {
    bundle: DEFAULT_MODEL_BUNDLE,
    executionProviders: [...DEFAULT_EXECUTION_PROVIDERS],
    strict: false,
    maxNewTokens: DEFAULT_MAX_NEW_TOKENS,
    timeoutMs: DEFAULT_MODEL_TIMEOUT_MS,
    hardTimeoutGraceMs: DEFAULT_HARD_TIMEOUT_GRACE_MS,
    intraOpNumThreads: DEFAULT_INTRA_OP_NUM_THREADS,
  },
  imagePrep: { frameTimeoutMs: DEFAULT_FRAME_TIMEOUT_MS, maxHeapMb: DEFAULT_WORKER_MEMORY_MB },
  dicomLimits: { ...DEFAULT_DICOM_LIMITS },
  selection: {
    eachImage: [...DEFAULT_EACH_IMAGE_MODALITIES],
    perSeriesSlices: DEFAULT_PER_SERIES_SLICES,
    multiFrameFrames: DEFAULT_MULTI_FRAME_FRAMES,
  },
  dimse: {
    maxPduLength: DEFAULT_MAX_PDU_LENGTH,
    artimMs: DEFAULT_ASSOCIATION_TIMEOUTS.artimMs,
    idleMs: DEFAULT_ASSOCIATION_TIMEOUTS.idleMs,
    maxAssociations: DEFAULT_MAX_ASSOCIATIONS,
    listeners: [],
  },
  remoteNodes: [],
  destinations: [{ name: DEFAULT_DESTINATION_NAME, type: 'folder', path: './var/outbox' }],
  defaultDestination: DEFAULT_DESTINATION_NAME,
  routes: [],
  jobs: {
    pollIntervalMs: DEFAULT_POLL_INTERVAL_MS,
    leaseMs: DEFAULT_LEASE_MS,
    concurrency: DEFAULT_CONCURRENCY,
    maxAttempts: DEFAULT_MAX_ATTEMPTS,
    backoffBaseMs: DEFAULT_BACKOFF_BASE_MS,
    backoffMaxMs: DEFAULT_BACKOFF_MAX_MS,
  },
  log: { level: DEFAULT_LOG_LEVEL },
  audit: {
    anchor: { directory: '', intervalSeconds: DEFAULT_ANCHOR_INTERVAL_SECONDS, privateKeyFile: '', publicKeyFile: '' },
    export: { syslog: { host: '', port: 6514, caFile: '', certFile: '', keyFile: '', serverName: '' } },
    retention: AUDIT_RETENTION_DEFAULTS,
  },
} as const;
