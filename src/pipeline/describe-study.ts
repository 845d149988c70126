import type { Logger } from 'winston';
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
}

/** Stored as the job's result. */
export interface DescribeStudyResult extends DraftExportResult {
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
): Promise<DescribeStudyResult> {
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
  const described = await describeImages(deps, { studyInstanceUid: job.studyInstanceUid, instances }, { log, signal });
  // The study lifecycle's 'described' step (the worker records it with the job's lease held).
  await progress?.described();
  // Routes match on the modalities of all the study's instances, images or not.
  const studyModalities = [...new Set(instances.map((i) => i.modality).filter((m): m is string => !!m))];
  // ... and on the local AEs they were sent to (C-STORE Called AE, STOW-RS per-AE path).
  const studyCalledAeTitles = [...new Set(instances.map((i) => i.calledAeTitle).filter((a): a is string => !!a))];
  const exported = await exportDraft(
    { ...deps, identity: deps.model.info },
    { ...job, ...(studyVersion === undefined ? {} : { studyVersion }) },
    { described, studyModalities, studyCalledAeTitles },
    log,
  );
  return {
    ...exported,
    selected: described.selected,
    described: described.findings.length,
    skipped: described.skipped,
  };
}
