import type { Logger } from 'winston';
import { referencedTags } from '../config/routing-rules.js';
import type { SrExportLedger } from '../export/sr-export-ledger.js';
import type { StoredInstance } from '../ingest/types.js';
import { childLogger } from '../logger.js';
import {
  type DescribedImages,
  type DescribeImagesDeps,
  describeImages,
  type InferenceRecorder,
} from './describe-images.js';
import {
  type DraftExportDeps,
  type DraftExportResult,
  type ExportRecorder,
  exportDraft,
  resendStagedDraft,
} from './draft-export.js';
import { decideRoute, effectiveSelection, type RoutingDecision } from './routing.js';
import { studyFactsOf, type TagReader } from './routing-facts.js';

/**
 * The describe-study job handler: the study's stored rows → describe the selected images
 * (describe-images.ts) → build and export the draft (draft-export.ts). It opens no file (the image
 * preparer does) and changes no `studies` row: the job worker moves the study along its lifecycle,
 * told through `progress` when the images are described.
 */

/** Audit and bookkeeping side effects of one job, written by the gateway to PostgreSQL. */
export type PipelineRecorder = InferenceRecorder & ExportRecorder;

export interface DescribeStudyDeps
  extends Omit<DescribeImagesDeps, 'recorder'>,
    Omit<DraftExportDeps, 'recorder' | 'identity' | 'ledger'> {
  /** The export ledger and outbox: predecessor lookup, staging, and what an earlier attempt staged. */
  readonly ledger: Pick<SrExportLedger, 'findPredecessor' | 'stage' | 'stagedForJob'>;
  /** The study's instances as ingest stored them (instance repository `listForStudy`). */
  readonly listInstances: (studyInstanceUid: string) => Promise<readonly StoredInstance[]>;
  /**
   * The version of the study's result (study-lifecycle.ts `getStudyVersion`, migration 0019), read
   * before the instances so the draft never claims an older version than its input set. Absent: 1.
   */
  readonly studyVersion?: (studyInstanceUid: string) => Promise<number>;
  readonly recorder: PipelineRecorder;
  readonly logger?: Logger;
  /**
   * Reads the attributes the rules' `tags` conditions name from one instance per series
   * (src/ingest/header-tags.ts). Absent: tag conditions see no values (and do not hold).
   */
  readonly readTags?: TagReader;
}

/** The routing decision as the job result records it (issue 11: which rule, and why). */
export interface JobRouting {
  readonly route: string | null;
  readonly why: string;
  readonly destinations: readonly string[];
  readonly ignore: boolean;
  readonly selection?: RoutingDecision['selection'];
  readonly model?: string;
}

/** Stored as the job's result when an ignore rule matched: nothing was described or sent. */
export interface IgnoredStudyResult {
  readonly ignored: true;
  readonly routing: JobRouting;
}

/** Stored as the job's result. */
export interface DescribeStudyResult extends DraftExportResult {
  /** Absent for a resend of a draft staged before issue 11's routing record. */
  readonly routing?: JobRouting;
  readonly selected: number;
  readonly described: number;
  readonly skipped: DescribedImages['skipped'];
}

export async function describeStudy(
  deps: DescribeStudyDeps,
  job: { id: number; studyInstanceUid: string },
  signal?: AbortSignal,
  /** The worker's JobProgress: `described()` moves the study to 'described' before the export. */
  progress?: { described(): Promise<void> },
): Promise<DescribeStudyResult | IgnoredStudyResult> {
  const log = deps.logger ?? childLogger('describe-study', { jobId: job.id, studyInstanceUid: job.studyInstanceUid });
  // A retry of a job whose draft is already built (staged by an earlier attempt whose send failed,
  // timed out, or whose process died): resend those bytes; the model does not run again (issue 15).
  const staged = await deps.ledger.stagedForJob(job.id);
  if (staged.length > 0) {
    await progress?.described();
    return resendStagedDraft(deps, staged, log);
  }
  const studyVersion = await deps.studyVersion?.(job.studyInstanceUid);
  const instances = await deps.listInstances(job.studyInstanceUid);
  // Routing first (issue 11): an ignore rule means no image is decoded, and a rule's frame policy
  // decides which are. Facts come from the stored rows; tags from one header per series.
  const facts = await studyFactsOf(instances, referencedTags(deps.routes), deps.readTags);
  const decision = decideRoute(deps.routes, deps.defaultDestination, facts);
  const routing: JobRouting = {
    route: decision.route,
    why: decision.why,
    destinations: decision.destinations,
    ignore: decision.ignore,
    ...(decision.selection ? { selection: decision.selection } : {}),
    ...(decision.model !== undefined ? { model: decision.model } : {}),
  };
  log.info('study routed', { route: decision.route, destinations: decision.destinations, ignore: decision.ignore });
  if (decision.ignore) {
    await progress?.described();
    return { ignored: true, routing };
  }
  const selection = effectiveSelection(deps.selection, decision.selection);
  const described = await describeImages(
    { ...deps, selection },
    { studyInstanceUid: job.studyInstanceUid, instances },
    { log, signal },
  );
  // The study lifecycle's 'described' step (the worker records it with the job's lease held).
  await progress?.described();
  const exported = await exportDraft(
    { ...deps, identity: deps.model.info },
    { ...job, ...(studyVersion === undefined ? {} : { studyVersion }) },
    { described, studyModalities: [], routing: decision },
    log,
  );
  return {
    ...exported,
    routing,
    selected: described.selected,
    described: described.findings.length,
    skipped: described.skipped,
  };
}
