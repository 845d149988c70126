import { createHash } from 'node:crypto';
import type { Logger } from 'winston';
import type { NaturalDataset } from '../dicom/dataset.js';
import type { DraftSrFinding } from '../dicom/sr/draft-sr.js';
import { DicomError, ErrorCode, errorCodeOf, normalizeErrorString, RadScribeError } from '../errors.js';
import type { ModelIdentity } from '../inference/model-identity.js';
import { ModelFamily } from '../inference/model-manifest.js';
import type { QuarantineDetail } from '../ingest/instance-quarantine.js';
import { QuarantineReason, type StoredInstance } from '../ingest/types.js';
import { type SelectionPolicy, selectFrames } from './frame-selection.js';
import { ImagePrepError, type PreparedImage, type PreparedInput, PrepFailure } from './image-prep-types.js';

/**
 * "Describe the selected images" (issue 8), the first half of a describe-study job: the study's
 * stored rows → frame selection → image preparation → model → findings. Selection reads rows only;
 * the image preparer is the only code that opens a file, and it hands back the header the SR needs.
 * Per-image failures skip that image (the SR becomes PARTIAL, PS3.3 C.17.2 Completion Flag);
 * nothing described at all is a job failure with the first image's error code.
 *
 * Poison instances (issue 9): an instance whose preparation breaks a DICOM limit, or crashes, runs
 * out of memory in or times out the image-prep worker, is quarantined at once — after its first
 * crash — and the job goes on with the study's other images. The decode marker is committed before
 * each preparation and cleared when the worker answers, so an instance that took the whole process
 * down is found marked when the job is claimed again, and is quarantined without being opened. (A
 * process that dies in the moment between the answer and the clear marks an innocent instance; the
 * quarantine is audited, so an operator can see and release it.)
 */

/** Decode marker and quarantine (InstanceQuarantine implements it). */
export interface DecodeQuarantine {
  decodeStarting(inst: StoredInstance): Promise<void>;
  decodeAnswered(inst: StoredInstance): Promise<void>;
  quarantine(inst: StoredInstance, reason: QuarantineReason, detail?: QuarantineDetail): Promise<boolean>;
}

/** Why a failed preparation quarantines its instance; undefined for an ordinary per-image failure. */
export function quarantineReasonOf(err: unknown): QuarantineReason | undefined {
  if (errorCodeOf(err) === ErrorCode.DicomHostile) return QuarantineReason.LimitExceeded;
  if (!(err instanceof ImagePrepError)) return undefined;
  switch (err.failure) {
    case PrepFailure.WorkerOutOfMemory:
      return QuarantineReason.WorkerOutOfMemory;
    case PrepFailure.WorkerCrashed:
      return QuarantineReason.WorkerCrashed;
    case PrepFailure.TimedOut:
      return QuarantineReason.TimedOut;
    default:
      return undefined;
  }
}

/** What the pipeline needs from the model runtime (InferenceClient implements it). */
export interface DraftModel {
  /** Name, version, Device UID and provider, as the inference side reports them. */
  readonly info: ModelIdentity;
  readonly preprocessorConfig: unknown;
  describe(
    input: PreparedInput,
    opts: { signal?: AbortSignal },
  ): Promise<{ text: string; tokenIds: number[]; stopReason: string; timings: unknown }>;
}

/** Prepares one frame of a file (ImagePrepClient implements it); rejects with an ImagePrepError. */
export interface ImagePreparer {
  prepare(filePath: string, frameIndex: number, preprocessorConfig: unknown): Promise<Omit<PreparedImage, 'image'>>;
}

/** One inference run, audited by the gateway (110100-style application activity, no PHI, no text). */
export interface InferenceRecorder {
  inferenceRun(ev: {
    studyInstanceUid: string;
    sopInstanceUid: string;
    frame: number;
    outcome: 'success' | 'failure';
    detail: Record<string, unknown>;
  }): Promise<void>;
}

export interface DescribeImagesDeps {
  readonly model: DraftModel;
  readonly images: ImagePreparer;
  readonly selection: SelectionPolicy;
  readonly recorder: InferenceRecorder;
  /**
   * For an instance our decoders reject (dicom-unsupported), a path to an Explicit VR Little Endian
   * copy transcoded by the PACS it came from (WADO-RS transfer-syntax, PS3.18 §8.7.3.5), or
   * undefined when the instance has no such source.
   */
  readonly transcode?: (
    instance: StoredInstance,
    candidate: { studyInstanceUid: string },
  ) => Promise<string | undefined>;
  /** Decode marker and quarantine; without it nothing is marked or quarantined (unit tests, CLI). */
  readonly quarantine?: DecodeQuarantine;
}

/** An image the job selected but could not describe. */
export interface SkippedImage {
  readonly sopInstanceUid: string;
  /** 1-based frame number. */
  readonly frame: number;
  readonly code: ErrorCode;
}

export interface DescribedImages {
  /** Frames the selection policy picked. */
  readonly selected: number;
  readonly findings: readonly DraftSrFinding[];
  /** Headers (no Pixel Data) of the described instances, once each, in selection order: the SR's evidence. */
  readonly sources: readonly NaturalDataset[];
  readonly skipped: readonly SkippedImage[];
}

/** The label the fixture's text carries wherever it appears (issue #2: "labelled as a test fixture"). */
export const FIXTURE_TEXT_PREFIX = '[TEST FIXTURE — OUTPUT IS MEANINGLESS] ';

async function prepareWithFallback(
  deps: DescribeImagesDeps,
  instance: StoredInstance,
  frameIndex: number,
): Promise<{ input: PreparedInput; header: NaturalDataset; transcoded: boolean }> {
  const cfg = deps.model.preprocessorConfig;
  try {
    return { ...(await deps.images.prepare(instance.filePath, frameIndex, cfg)), transcoded: false };
  } catch (err) {
    if (errorCodeOf(err) !== ErrorCode.DicomUnsupported || !deps.transcode) throw err;
    const copy = await deps.transcode(instance, { studyInstanceUid: instance.studyInstanceUid });
    if (!copy) throw err;
    const prepared = await deps.images.prepare(copy, frameIndex, cfg);
    // The evidence is the instance we stored: keep its header (read in the failed attempt) and take
    // only the pixels from the PACS's copy.
    const header = err instanceof ImagePrepError && err.header ? err.header : prepared.header;
    return { input: prepared.input, header, transcoded: true };
  }
}

export async function describeImages(
  deps: DescribeImagesDeps,
  study: { readonly studyInstanceUid: string; readonly instances: readonly StoredInstance[] },
  opts: { readonly log: Logger; readonly signal?: AbortSignal | undefined },
): Promise<DescribedImages> {
  const { log, signal } = opts;
  const { studyInstanceUid } = study;
  const quarantine = deps.quarantine;
  const quarantined = new Set<string>();
  const setAside = async (inst: StoredInstance, reason: QuarantineReason, detail: QuarantineDetail) => {
    quarantined.add(inst.sopInstanceUid);
    if (quarantine && (await quarantine.quarantine(inst, reason, detail)))
      log.warn('instance quarantined', { sopInstanceUid: inst.sopInstanceUid, reason, ...detail });
  };
  // A marker left by an earlier attempt: that attempt's process died while decoding this instance.
  for (const inst of study.instances) {
    if (quarantine && inst.decodeStartedAt) await setAside(inst, QuarantineReason.ProcessDiedWhileDecoding, {});
  }
  const instances = study.instances.filter((i) => !quarantined.has(i.sopInstanceUid));
  const selected = selectFrames(instances, deps.selection);
  if (selected.length === 0 && quarantined.size > 0)
    throw new DicomError(
      ErrorCode.DicomHostile,
      `no image left to describe: ${quarantined.size} instance(s) quarantined after crashing a decode`,
    );
  if (selected.length === 0)
    throw new DicomError(ErrorCode.DicomUnsupported, 'study has no image the selection policy accepts');

  const info = deps.model.info;
  const findings: DraftSrFinding[] = [];
  const headers = new Map<string, NaturalDataset>();
  const skipped: SkippedImage[] = [];
  let firstError: unknown;
  for (const { candidate: inst, frameIndex } of selected) {
    if (signal?.aborted) throw new RadScribeError(ErrorCode.Timeout, 'describe-study aborted');
    const frame = frameIndex + 1;
    if (quarantined.has(inst.sopInstanceUid)) {
      skipped.push({ sopInstanceUid: inst.sopInstanceUid, frame, code: ErrorCode.DicomHostile });
      continue;
    }
    const started = Date.now();
    // Outside the try: a database that cannot take the marker fails the job (retryable), it does
    // not skip the image.
    await quarantine?.decodeStarting(inst);
    try {
      let prepared: Awaited<ReturnType<typeof prepareWithFallback>>;
      try {
        prepared = await prepareWithFallback(deps, inst, frameIndex);
      } catch (err) {
        const reason = quarantineReasonOf(err);
        if (reason) {
          const violation = (err as { violation?: unknown }).violation;
          await setAside(inst, reason, {
            errorCode: errorCodeOf(err),
            frame,
            ...(typeof violation === 'string' ? { violation } : {}),
          });
        } else await quarantine?.decodeAnswered(inst);
        throw err;
      }
      await quarantine?.decodeAnswered(inst);
      const { input, header, transcoded } = prepared;
      const prepareMs = Date.now() - started;
      const out = await deps.model.describe(input, signal ? { signal } : {});
      const text = info.fixture ? `${FIXTURE_TEXT_PREFIX}${out.text}` : out.text;
      findings.push({
        sopClassUid: inst.sopClassUid,
        sopInstanceUid: inst.sopInstanceUid,
        ...(inst.numberOfFrames > 1 ? { frameNumber: frame } : {}),
        text,
      });
      if (!headers.has(inst.sopInstanceUid)) headers.set(inst.sopInstanceUid, header);
      await deps.recorder.inferenceRun({
        studyInstanceUid,
        sopInstanceUid: inst.sopInstanceUid,
        frame,
        outcome: 'success',
        detail: {
          model: info.name,
          modelVersion: info.version,
          deviceUid: info.deviceUid,
          provider: info.provider,
          tokens: out.tokenIds.length,
          stopReason: out.stopReason,
          // A hash, never the text: the audit table holds no PHI and no model output.
          textSha256: createHash('sha256').update(text).digest('hex'),
          tiles: input.family === ModelFamily.Mllama ? input.tiles : [1, 1],
          transcodedByPacs: transcoded,
          prepareMs,
          totalMs: Date.now() - started,
        },
      });
      log.info('image described', { sopInstanceUid: inst.sopInstanceUid, frame, tokens: out.tokenIds.length });
    } catch (err) {
      const code = errorCodeOf(err);
      firstError ??= err;
      skipped.push({ sopInstanceUid: inst.sopInstanceUid, frame, code });
      await deps.recorder.inferenceRun({
        studyInstanceUid,
        sopInstanceUid: inst.sopInstanceUid,
        frame,
        outcome: 'failure',
        detail: { code, message: normalizeErrorString(err) },
      });
      log.warn('image not described', { sopInstanceUid: inst.sopInstanceUid, frame, code });
    }
  }
  if (findings.length === 0 && quarantined.size > 0 && skipped.every((s) => quarantined.has(s.sopInstanceUid)))
    throw new DicomError(
      ErrorCode.DicomHostile,
      `no image left to describe: ${quarantined.size} instance(s) quarantined after crashing a decode`,
    );
  if (findings.length === 0)
    throw firstError instanceof Error ? firstError : new RadScribeError(ErrorCode.Internal, 'no image described');
  return { selected: selected.length, findings, sources: [...headers.values()], skipped };
}
