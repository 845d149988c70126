import type { RadScribeConfig, RemoteNodeConfig } from '../config.js';
import type { OpenDatabaseOptions } from '../db/pool.js';
import type { DicomLimits } from '../dicom/limits.js';
import type { DescribeCallOptions } from '../inference/inference-client.js';
import type { DiskGuardOptions } from '../ingest/disk-guard.js';
import type { RetentionSweeperOptions } from '../ingest/retention.js';
import type { JobQueueOptions } from '../jobs/job-queue.js';
import type { JobWorkerOptions } from '../jobs/worker.js';
import type { DicomwebClientOptions } from '../pacs/dicomweb-client.js';
import type { QidoPollerOptions } from '../pacs/qido-poller.js';
import type { StowLimits } from '../pacs/stow-router.js';
import type { SelectionPolicy } from '../pipeline/frame-selection.js';
import type { ImagePrepOptions } from '../pipeline/image-prep-client.js';

/**
 * Config slice → the consumer's options object (STYLE rule 8, §2.5: slices are passed into
 * constructors). One function per consumer, so the composition root wires a key by spreading one
 * call, and a new key reaches its consumer by an edit here, not in the gateway.
 */

export function databaseOptions(cfg: Pick<RadScribeConfig, 'database' | 'dataDir'>): OpenDatabaseOptions {
  return {
    ...(cfg.database.url ? { url: cfg.database.url } : {}),
    dataDir: cfg.dataDir,
    poolSize: cfg.database.poolSize,
    statementTimeoutMs: cfg.database.statementTimeoutMs,
    checkoutTimeoutMs: cfg.database.checkoutTimeoutMs,
  };
}

/** `jobs.maxAttempts` is what enqueue writes to `jobs.max_attempts`; the backoff goes to FAIL_JOB. */
export function jobQueueOptions(cfg: Pick<RadScribeConfig, 'jobs'>): JobQueueOptions {
  return {
    maxAttempts: cfg.jobs.maxAttempts,
    backoffBaseMs: cfg.jobs.backoffBaseMs,
    backoffMaxMs: cfg.jobs.backoffMaxMs,
  };
}

export function jobWorkerOptions(
  cfg: Pick<RadScribeConfig, 'jobs' | 'ingest'>,
): Pick<JobWorkerOptions, 'pollIntervalMs' | 'leaseMs' | 'concurrency' | 'stabilityWindowMs'> {
  return {
    pollIntervalMs: cfg.jobs.pollIntervalMs,
    leaseMs: cfg.jobs.leaseMs,
    concurrency: cfg.jobs.concurrency,
    stabilityWindowMs: cfg.ingest.stabilityWindowMs,
  };
}

/** Timeouts of a remote node's client; credentials are resolved from the environment elsewhere. */
export function dicomwebClientOptions(
  node: RemoteNodeConfig,
): Pick<DicomwebClientOptions, 'baseUrl' | 'timeoutMs' | 'storeTimeoutMs'> {
  return { baseUrl: node.baseUrl, timeoutMs: node.timeoutMs, storeTimeoutMs: node.storeTimeoutMs };
}

export function qidoPollerOptions(
  node: RemoteNodeConfig,
): Pick<
  QidoPollerOptions,
  | 'intervalMs'
  | 'lookbackDays'
  | 'pageSize'
  | 'maxPages'
  | 'backoff'
  | 'maxRetrieveAttempts'
  | 'transferSyntax'
  | 'overlapMs'
  | 'fullScanIntervalMs'
  | 'watchMs'
  | 'modalities'
  | 'modalityFilter'
  | 'maxResults'
> {
  const p = node.poll;
  return {
    intervalMs: p.intervalMs,
    lookbackDays: p.lookbackDays,
    pageSize: p.pageSize,
    maxPages: p.maxPages,
    backoff: { ...p.backoff },
    maxRetrieveAttempts: p.maxRetrieveAttempts,
    overlapMs: p.overlapMs,
    fullScanIntervalMs: p.fullScanIntervalMs,
    watchMs: p.watchMs,
    modalities: [...p.modalities],
    modalityFilter: p.modalityFilter,
    maxResults: p.maxResults,
    ...(p.transferSyntax ? { transferSyntax: p.transferSyntax } : {}),
  };
}

export function imagePrepOptions(cfg: Pick<RadScribeConfig, 'imagePrep' | 'dicomLimits'>): ImagePrepOptions {
  return {
    frameTimeoutMs: cfg.imagePrep.frameTimeoutMs,
    maxOldGenerationSizeMb: cfg.imagePrep.maxHeapMb,
    limits: dicomLimitsOf(cfg),
  };
}

/** The DICOM limits for the instance store (receipt) and the image-prep worker (decode). */
export function dicomLimitsOf(cfg: Pick<RadScribeConfig, 'dicomLimits'>): DicomLimits {
  return { ...cfg.dicomLimits };
}

/**
 * Options of each describe call: the soft limit stops generation between steps; the hard limit
 * (soft + grace) kills the inference process when a run is stuck inside ONNX Runtime.
 */
export function describeCallOptions(
  cfg: Pick<RadScribeConfig, 'model'>,
): Pick<DescribeCallOptions, 'maxNewTokens' | 'timeoutMs' | 'hardTimeoutMs'> {
  return {
    maxNewTokens: cfg.model.maxNewTokens,
    timeoutMs: cfg.model.timeoutMs,
    hardTimeoutMs: cfg.model.timeoutMs + cfg.model.hardTimeoutGraceMs,
  };
}

export function stowLimits(cfg: Pick<RadScribeConfig, 'ingest'>): StowLimits {
  return { maxPartBytes: cfg.ingest.maxPartBytes, maxRequestBytes: cfg.ingest.maxRequestBytes };
}

export function selectionPolicy(cfg: Pick<RadScribeConfig, 'selection'>): SelectionPolicy {
  return { ...cfg.selection };
}

/** The instance store's free-space limits (issue 9). */
export function diskGuardOptions(
  cfg: Pick<RadScribeConfig, 'storage'>,
): Pick<DiskGuardOptions, 'reserveBytes' | 'watermarkPercent'> {
  return { reserveBytes: cfg.storage.reserveBytes, watermarkPercent: cfg.storage.watermarkPercent };
}

export function retentionOptions(
  cfg: Pick<RadScribeConfig, 'retention'>,
): Pick<RetentionSweeperOptions, 'intervalMs' | 'rules'> {
  return { intervalMs: cfg.retention.intervalMs, rules: cfg.retention.rules.map((r) => ({ ...r })) };
}
