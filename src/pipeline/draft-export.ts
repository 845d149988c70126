import type { Logger } from 'winston';
import type { RouteConfig } from '../config.js';
import { buildEncapsulatedPdf } from '../dicom/pdf/encapsulated-pdf.js';
import type { PdfFont } from '../dicom/pdf/fonts.js';
import type { SrProfile } from '../dicom/sr/draft-policy.js';
import { buildDraftSr } from '../dicom/sr/draft-sr.js';
import type { SourceAttributeNote } from '../dicom/sr/source-attributes.js';
import { ErrorCode, errorCodeOf, normalizeErrorString, RadScribeError } from '../errors.js';
import type { OutgoingSr, SrDestination } from '../export/sr-destination.js';
import { ExportedObjectKind, type ExportRecord, type SrExportLedger } from '../export/sr-export-ledger.js';
import type { ModelIdentity } from '../inference/model-identity.js';
import type { DescribedImages } from './describe-images.js';
import { routeStudy } from './routing.js';

/**
 * "Build and export the draft" (issue 8), the second half of a describe-study job: findings → draft
 * SR (with its predecessor, PS3.3 C.17.2.1) → the destination the routes choose → PDF companion when
 * that destination wants one; every send is recorded in the export ledger and the audit trail.
 */

/** A configured destination with what it receives (config `destinations[]`). */
export interface RoutedDestination {
  readonly destination: SrDestination;
  readonly srProfile: SrProfile;
  readonly pdfCompanion: boolean;
}

/** Export side effects, written by the gateway to PostgreSQL (ledger row and audit event together). */
export interface ExportRecorder {
  /**
   * `sourceAttributes`: source attributes normalised or dropped on the way into this object
   * (source-attributes.ts; tags and reasons only), recorded as a detail of the export's audit event.
   */
  srExported(ev: {
    record: ExportRecord;
    location: string;
    sourceAttributes?: readonly SourceAttributeNote[];
  }): Promise<void>;
  srExportFailed(ev: { record: ExportRecord; code: ErrorCode; message: string }): Promise<void>;
}

export interface DraftExportDeps {
  /** The model that wrote the findings: TID 4019 Algorithm Identification and the Device UID. */
  readonly identity: ModelIdentity;
  readonly routes: readonly RouteConfig[];
  readonly defaultDestination: string;
  readonly destinations: ReadonlyMap<string, RoutedDestination>;
  readonly recorder: ExportRecorder;
  /** What was exported where; finds the predecessor a new model version's draft replaces. */
  readonly ledger: Pick<SrExportLedger, 'findPredecessor'>;
  /** Unicode fonts for PDF companions (loaded once at start-up when any destination wants one). */
  readonly pdfFonts?: readonly PdfFont[] | undefined;
}

export interface DraftExportResult {
  readonly srSopInstanceUid: string;
  readonly destination: string;
  /** Name of the route that chose the destination; null when none matched (defaultDestination). */
  readonly route: string | null;
  readonly location: string;
  readonly pdfSopInstanceUid?: string;
  readonly predecessorSopInstanceUid?: string;
  /** Version of the study's result the draft describes (migration 0017). */
  readonly studyVersion: number;
}

export async function exportDraft(
  deps: DraftExportDeps,
  /** `studyVersion`: the version of the study's result the job describes (migration 0017); default 1. */
  job: { readonly id: number; readonly studyInstanceUid: string; readonly studyVersion?: number },
  /** `studyModalities`: every modality among the study's instances, for the routes' `match.modality`. */
  draft: { readonly described: DescribedImages; readonly studyModalities: readonly string[] },
  log: Logger,
): Promise<DraftExportResult> {
  const { findings, sources, skipped } = draft.described;
  // The matching route's name goes to the log and the job result: an operator sees which rule
  // sent a draft where (config `routes[].name`).
  const { destination: destName, route } = routeStudy(deps.routes, deps.defaultDestination, draft.studyModalities);
  const routed = deps.destinations.get(destName);
  if (!routed) throw new RadScribeError(ErrorCode.ConfigInvalid, `destination "${destName}" is not configured`);

  const info = deps.identity;
  const algorithm = {
    name: info.name,
    version: info.version,
    manufacturer: 'RadScribe',
    deviceUid: info.deviceUid,
    parameters: info.prompt,
    fixture: info.fixture,
  };
  const build = (predecessor?: Parameters<typeof buildDraftSr>[0]['predecessor']) =>
    buildDraftSr({
      sources,
      findings,
      algorithm,
      completionComplete: skipped.length === 0,
      profile: routed.srProfile,
      ...(job.studyVersion === undefined ? {} : { studyVersion: job.studyVersion }),
      ...(predecessor ? { predecessor } : {}),
    });
  // The draft this one replaces for the same study and destination is its predecessor (PS3.3
  // C.17.2.1 Predecessor Documents Sequence): one by another model version, or the previous version
  // of the study's result. The reader sees which draft replaced which.
  const first = build();
  const prior = await deps.ledger.findPredecessor({
    studyInstanceUid: job.studyInstanceUid,
    destination: destName,
    sopClassUid: first.dataset.SOPClassUID as string,
    sopInstanceUid: first.sopInstanceUid,
  });
  const sr = prior ? build([prior]) : first;

  const exportOne = async (
    obj: OutgoingSr,
    record: ExportRecord,
    sourceAttributes?: readonly SourceAttributeNote[],
  ): Promise<string> => {
    try {
      const { location } = await routed.destination.send(obj);
      await deps.recorder.srExported({
        record,
        location,
        ...(sourceAttributes && sourceAttributes.length > 0 ? { sourceAttributes } : {}),
      });
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
    sr.sourceAttributeNotes,
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
    route,
    profile: routed.srProfile,
    described: findings.length,
    skipped: skipped.length,
    predecessor: prior?.sopInstanceUid,
    studyVersion: sr.studyVersion,
    // Tags only (never values): which source attributes were normalised or dropped.
    ...(sr.sourceAttributeNotes.length > 0
      ? { sourceAttributes: sr.sourceAttributeNotes.map((n) => `${n.tag}:${n.action}:${n.reason}`) }
      : {}),
  });
  return {
    srSopInstanceUid: sr.sopInstanceUid,
    destination: destName,
    route,
    location,
    ...(pdfSopInstanceUid ? { pdfSopInstanceUid } : {}),
    ...(prior ? { predecessorSopInstanceUid: prior.sopInstanceUid } : {}),
    studyVersion: sr.studyVersion,
  };
}
