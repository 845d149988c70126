import { createHash } from 'node:crypto';
import { closeSync, openSync, readFileSync, readSync } from 'node:fs';
import type { Logger } from 'winston';
import type { RouteConfig } from '../config.js';
import { type NaturalDataset, parsePart10 } from '../dicom/dataset.js';
import { buildEncapsulatedPdf } from '../dicom/pdf/encapsulated-pdf.js';
import type { PdfFont } from '../dicom/pdf/fonts.js';
import { buildDraftSr, type SrProfile } from '../dicom/sr/document.js';
import { DicomError, ErrorCode, errorCodeOf, normalizeErrorString, RadScribeError } from '../errors.js';
import type { OutgoingSr, SrDestination } from '../export/sr-destination.js';
import { ExportedObjectKind, type ExportRecord, type SrExportLedger } from '../export/sr-export-ledger.js';
import { childLogger } from '../logger.js';
import { type ImageCandidate, type SelectionPolicy, selectFrames } from './frame-selection.js';
import type { PreparedInput } from './image-prep-types.js';
import { chooseDestination } from './routing.js';

/** A stored instance of the study, as the repository lists it. */
export interface StoredInstance {
  readonly sopInstanceUid: string;
  readonly seriesInstanceUid: string;
  readonly sopClassUid: string;
  readonly modality: string | null | undefined;
  readonly filePath: string;
  readonly receivedVia?: string;
  readonly actor?: string | null;
}

/** What the pipeline needs from the model runtime (InferenceClient implements it). */
export interface DraftModel {
  readonly info: {
    name: string;
    version: string;
    deviceUid: string;
    fixture: boolean;
    label?: string;
    prompt: string;
    provider: string;
  };
  readonly preprocessorConfig: unknown;
  describe(
    input: PreparedInput,
    opts: { signal?: AbortSignal },
  ): Promise<{ text: string; tokenIds: number[]; stopReason: string; timings: unknown }>;
}

export interface ImagePreparer {
  prepare(filePath: string, frameIndex: number, preprocessorConfig: unknown): Promise<{ input: PreparedInput }>;
}

/** Audit and bookkeeping side effects, written by the gateway to PostgreSQL. */
export interface PipelineRecorder {
  inferenceRun(ev: {
    studyInstanceUid: string;
    sopInstanceUid: string;
    frame: number;
    outcome: 'success' | 'failure';
    detail: Record<string, unknown>;
  }): Promise<void>;
  srExported(ev: { record: ExportRecord; location: string }): Promise<void>;
  srExportFailed(ev: { record: ExportRecord; code: ErrorCode; message: string }): Promise<void>;
}

export interface DescribeStudyDeps {
  readonly listInstances: (studyInstanceUid: string) => Promise<StoredInstance[]>;
  readonly model: DraftModel;
  readonly images: ImagePreparer;
  readonly selection: SelectionPolicy;
  readonly routes: readonly RouteConfig[];
  readonly defaultDestination: string;
  readonly destinations: ReadonlyMap<string, RoutedDestination>;
  readonly recorder: PipelineRecorder;
  /** What was exported where; finds the predecessor a new model version's draft replaces. */
  readonly ledger: Pick<SrExportLedger, 'findPredecessor'>;
  /** Unicode fonts for PDF companions (loaded once at start-up when any destination wants one). */
  readonly pdfFonts?: readonly PdfFont[];
  /**
   * For an instance our decoders reject (dicom-unsupported), a path to an Explicit VR Little Endian
   * copy transcoded by the PACS it came from (WADO-RS transfer-syntax, PS3.18 §8.7.3.5), or
   * undefined when the instance has no such source.
   */
  readonly transcode?: (
    instance: StoredInstance,
    candidate: { studyInstanceUid: string },
  ) => Promise<string | undefined>;
  readonly logger?: Logger;
}

/** A configured destination with what it receives (config `destinations[]`). */
export interface RoutedDestination {
  readonly destination: SrDestination;
  readonly srProfile: SrProfile;
  readonly pdfCompanion: boolean;
}

export interface DescribeStudyResult {
  readonly srSopInstanceUid: string;
  readonly destination: string;
  readonly location: string;
  readonly pdfSopInstanceUid?: string;
  readonly predecessorSopInstanceUid?: string;
  readonly selected: number;
  readonly described: number;
  readonly skipped: { sopInstanceUid: string; frame: number; code: ErrorCode }[];
}

/** The label the fixture's text carries wherever it appears (issue #2: "labelled as a test fixture"). */
export const FIXTURE_TEXT_PREFIX = '[TEST FIXTURE — OUTPUT IS MEANINGLESS] ';

interface Candidate extends ImageCandidate {
  readonly filePath: string;
  readonly header: NaturalDataset;
  readonly stored: StoredInstance;
}

function num(v: unknown): number | undefined {
  const n = typeof v === 'string' ? Number.parseInt(v, 10) : typeof v === 'number' ? v : Number.NaN;
  return Number.isFinite(n) ? n : undefined;
}

/** Bytes read first for a header: enough for any ordinary data set before Pixel Data. */
const HEADER_PREFIX_BYTES = 256 * 1024;
const PIXEL_DATA_TAG_LE = Buffer.from([0xe0, 0x7f, 0x10, 0x00]);

/**
 * The data set up to Pixel Data, reading only a prefix of the file: the pixels are read once, by
 * the image-prep worker. A header longer than the prefix (large private sequences) falls back to
 * reading the whole file.
 */
function readHeader(filePath: string): NaturalDataset {
  const fd = openSync(filePath, 'r');
  let prefix: Buffer;
  try {
    prefix = Buffer.alloc(HEADER_PREFIX_BYTES);
    prefix = prefix.subarray(0, readSync(fd, prefix, 0, HEADER_PREFIX_BYTES, 0));
  } finally {
    closeSync(fd);
  }
  // The whole file fitted, or the prefix reaches the Pixel Data tag (7FE0,0010) in little-endian byte
  // order: the header is complete. Otherwise (a longer header, or retired big-endian encoding) read
  // the whole file.
  const complete = prefix.byteLength < HEADER_PREFIX_BYTES || prefix.includes(PIXEL_DATA_TAG_LE);
  return parsePart10(complete ? prefix : readFileSync(filePath), { untilPixelData: true }).dataset;
}

async function prepareWithFallback(
  deps: DescribeStudyDeps,
  c: Candidate,
  frameIndex: number,
  studyInstanceUid: string,
): Promise<{ input: PreparedInput; transcoded: boolean }> {
  try {
    return {
      input: (await deps.images.prepare(c.filePath, frameIndex, deps.model.preprocessorConfig)).input,
      transcoded: false,
    };
  } catch (err) {
    if (errorCodeOf(err) !== ErrorCode.DicomUnsupported || !deps.transcode) throw err;
    const copy = await deps.transcode(c.stored, { studyInstanceUid });
    if (!copy) throw err;
    return {
      input: (await deps.images.prepare(copy, frameIndex, deps.model.preprocessorConfig)).input,
      transcoded: true,
    };
  }
}

/**
 * One describe-study job: select frames, prepare tiles, run the model, build the draft SR, send it.
 * Per-image failures (an unsupported transfer syntax, a corrupt frame) skip that image and make the
 * SR PARTIAL; nothing described at all is a job failure with the first image's error code.
 */
export async function describeStudy(
  deps: DescribeStudyDeps,
  job: { id: number; studyInstanceUid: string },
  signal?: AbortSignal,
): Promise<DescribeStudyResult> {
  const log = deps.logger ?? childLogger('describe-study', { jobId: job.id, studyInstanceUid: job.studyInstanceUid });
  const stored = await deps.listInstances(job.studyInstanceUid);
  const candidates: Candidate[] = [];
  for (const s of stored) {
    let header: NaturalDataset;
    try {
      header = readHeader(s.filePath);
    } catch (err) {
      log.warn('stored instance unreadable; skipped', { sopInstanceUid: s.sopInstanceUid, code: errorCodeOf(err) });
      continue;
    }
    candidates.push({
      sopInstanceUid: s.sopInstanceUid,
      seriesInstanceUid: s.seriesInstanceUid,
      sopClassUid: s.sopClassUid,
      modality: s.modality ?? undefined,
      instanceNumber: num(header.InstanceNumber),
      numberOfFrames: num(header.NumberOfFrames) ?? 1,
      // Image Pixel Module (PS3.3 C.7.6.3): Rows/Columns are Type 1 wherever pixel data exists.
      hasPixelData: num(header.Rows) !== undefined && num(header.Columns) !== undefined,
      filePath: s.filePath,
      header,
      stored: s,
    });
  }
  const selected = selectFrames(candidates, deps.selection);
  if (selected.length === 0)
    throw new DicomError(ErrorCode.DicomUnsupported, 'study has no image the selection policy accepts');

  const findings: { sopClassUid: string; sopInstanceUid: string; frameNumber?: number; text: string }[] = [];
  const skipped: DescribeStudyResult['skipped'] = [];
  let firstError: unknown;
  for (const sel of selected) {
    if (signal?.aborted) throw new RadScribeError(ErrorCode.Timeout, 'describe-study aborted');
    const c = sel.candidate;
    const started = Date.now();
    try {
      const { input, transcoded } = await prepareWithFallback(deps, c, sel.frameIndex, job.studyInstanceUid);
      const prepMs = Date.now() - started;
      const out = await deps.model.describe(input, signal ? { signal } : {});
      const text = deps.model.info.fixture ? `${FIXTURE_TEXT_PREFIX}${out.text}` : out.text;
      findings.push({
        sopClassUid: c.sopClassUid,
        sopInstanceUid: c.sopInstanceUid,
        ...(c.numberOfFrames > 1 ? { frameNumber: sel.frameIndex + 1 } : {}),
        text,
      });
      await deps.recorder.inferenceRun({
        studyInstanceUid: job.studyInstanceUid,
        sopInstanceUid: c.sopInstanceUid,
        frame: sel.frameIndex + 1,
        outcome: 'success',
        detail: {
          model: deps.model.info.name,
          modelVersion: deps.model.info.version,
          deviceUid: deps.model.info.deviceUid,
          provider: deps.model.info.provider,
          tokens: out.tokenIds.length,
          stopReason: out.stopReason,
          // A hash, never the text: the audit table holds no PHI and no model output.
          textSha256: createHash('sha256').update(text).digest('hex'),
          tiles: input.family === 'mllama' ? input.tiles : [1, 1],
          transcodedByPacs: transcoded,
          prepareMs: prepMs,
          totalMs: Date.now() - started,
        },
      });
      log.info('image described', {
        sopInstanceUid: c.sopInstanceUid,
        frame: sel.frameIndex + 1,
        tokens: out.tokenIds.length,
      });
    } catch (err) {
      const code = errorCodeOf(err);
      firstError ??= err;
      skipped.push({ sopInstanceUid: c.sopInstanceUid, frame: sel.frameIndex + 1, code });
      await deps.recorder.inferenceRun({
        studyInstanceUid: job.studyInstanceUid,
        sopInstanceUid: c.sopInstanceUid,
        frame: sel.frameIndex + 1,
        outcome: 'failure',
        detail: { code, message: normalizeErrorString(err) },
      });
      log.warn('image not described', { sopInstanceUid: c.sopInstanceUid, frame: sel.frameIndex + 1, code });
    }
  }
  if (findings.length === 0)
    throw firstError instanceof Error ? firstError : new RadScribeError(ErrorCode.Internal, 'no image described');

  const describedUids = new Set(findings.map((f) => f.sopInstanceUid));
  const sources = selected
    .map((s) => s.candidate)
    .filter((c, i, all) => all.indexOf(c) === i && describedUids.has(c.sopInstanceUid));

  const modalities = [...new Set(candidates.map((c) => c.modality).filter((m): m is string => !!m))];
  const destName = chooseDestination(deps.routes, deps.defaultDestination, modalities);
  const routed = deps.destinations.get(destName);
  if (!routed) throw new RadScribeError(ErrorCode.ConfigInvalid, `destination "${destName}" is not configured`);

  const algorithm = {
    name: deps.model.info.name,
    version: deps.model.info.version,
    manufacturer: 'RadScribe',
    deviceUid: deps.model.info.deviceUid,
    parameters: deps.model.info.prompt,
    fixture: deps.model.info.fixture,
  };
  const draft = (predecessor?: Parameters<typeof buildDraftSr>[0]['predecessor']) =>
    buildDraftSr({
      sources: sources.map((c) => c.header),
      findings,
      algorithm,
      completionComplete: skipped.length === 0,
      profile: routed.srProfile,
      ...(predecessor ? { predecessor } : {}),
    });
  // A draft by another model version for the same study and destination is this one's predecessor
  // (PS3.3 C.17.2.1 Predecessor Documents Sequence): the reader sees which draft replaced which.
  const first = draft();
  const prior = await deps.ledger.findPredecessor({
    studyInstanceUid: job.studyInstanceUid,
    destination: destName,
    sopClassUid: first.dataset.SOPClassUID as string,
    deviceUid: algorithm.deviceUid,
  });
  const sr = prior ? draft([prior]) : first;

  const exportOne = async (obj: OutgoingSr, record: ExportRecord): Promise<string> => {
    try {
      const { location } = await routed.destination.send(obj);
      await deps.recorder.srExported({ record, location });
      return location;
    } catch (err) {
      await deps.recorder.srExportFailed({ record, code: errorCodeOf(err), message: normalizeErrorString(err) });
      throw err;
    }
  };
  const base = {
    studyInstanceUid: job.studyInstanceUid,
    deviceUid: algorithm.deviceUid,
    destination: destName,
    jobId: job.id,
  };
  const location = await exportOne(
    { studyInstanceUid: job.studyInstanceUid, sopInstanceUid: sr.sopInstanceUid, part10: sr.part10 },
    {
      ...base,
      sopInstanceUid: sr.sopInstanceUid,
      sopClassUid: sr.dataset.SOPClassUID as string,
      seriesInstanceUid: sr.seriesInstanceUid,
      objectKind: ExportedObjectKind.Sr,
    },
  );
  let pdfSopInstanceUid: string | undefined;
  if (routed.pdfCompanion) {
    if (!deps.pdfFonts) {
      throw new RadScribeError(
        ErrorCode.ConfigInvalid,
        `destination "${destName}" wants a PDF companion but no PDF fonts are loaded`,
      );
    }
    const pdf = await buildEncapsulatedPdf({ sr, fonts: deps.pdfFonts });
    await exportOne(
      { studyInstanceUid: job.studyInstanceUid, sopInstanceUid: pdf.sopInstanceUid, part10: pdf.part10 },
      {
        ...base,
        sopInstanceUid: pdf.sopInstanceUid,
        sopClassUid: pdf.dataset.SOPClassUID as string,
        seriesInstanceUid: pdf.seriesInstanceUid,
        objectKind: ExportedObjectKind.Pdf,
      },
    );
    pdfSopInstanceUid = pdf.sopInstanceUid;
  }
  log.info('draft SR exported', {
    srSopInstanceUid: sr.sopInstanceUid,
    destination: destName,
    profile: routed.srProfile,
    described: findings.length,
    skipped: skipped.length,
    predecessor: prior?.sopInstanceUid,
  });
  return {
    srSopInstanceUid: sr.sopInstanceUid,
    destination: destName,
    location,
    ...(pdfSopInstanceUid ? { pdfSopInstanceUid } : {}),
    ...(prior ? { predecessorSopInstanceUid: prior.sopInstanceUid } : {}),
    selected: selected.length,
    described: findings.length,
    skipped,
  };
}
