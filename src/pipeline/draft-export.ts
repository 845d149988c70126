import { createHash } from 'node:crypto';
import type { Logger } from 'winston';
import type { RouteConfig } from '../config.js';
import { buildEncapsulatedPdf } from '../dicom/pdf/encapsulated-pdf.js';
import type { PdfFont } from '../dicom/pdf/fonts.js';
import type { SrProfile } from '../dicom/sr/draft-policy.js';
import { buildDraftSr } from '../dicom/sr/draft-sr.js';
import type { SourceAttributeNote } from '../dicom/sr/source-attributes.js';
import { ErrorCode, normalizeErrorString, RadScribeError, RETRYABLE_CODES } from '../errors.js';
import { type Delivery, ExportConflictError, type OutgoingSr, type SrDestination } from '../export/sr-destination.js';
import {
  ExportedObjectKind,
  type ExportRecord,
  type SrExportLedger,
  type StagedExport,
} from '../export/sr-export-ledger.js';
import type { ModelIdentity } from '../inference/model-identity.js';
import type { DescribedImages, SkippedImage } from './describe-images.js';
import { type RoutingDecision, routeStudy } from './routing.js';

/**
 * "Build and export the draft" (issue 8), the second half of a describe-study job: findings → draft
 * SR (with its predecessor, PS3.3 C.17.2.1) → the destination the routes choose → PDF companion when
 * that destination wants one; every send is recorded in the export ledger and the audit trail.
 *
 * Outbox (issues 11 and 15): the draft's objects are staged in the export ledger (their Part 10
 * bytes, migration 0017) before the first send. When the send fails or times out, the job fails
 * with a retryable code and the queue retries it later; the retry finds the staged objects
 * (describe-study.ts) and resends exactly those bytes with {@link resendStagedDraft} — only the
 * objects not yet delivered — and never runs the model again. (Before issue 11 a job retry ran the
 * whole pipeline again: inference included, with possibly different text under the same UID.)
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
    /** The routing rule that sent it there (config routes[].name); null: the default destination. */
    route?: string | null;
    location: string;
    /** How it arrived; default stored. "already present, identical" when the PACS had our copy. */
    delivery?: Delivery;
    sourceAttributes?: readonly SourceAttributeNote[];
    /** A C-STORE warning status the SCP answered with (PS3.4 B.2.3: stored, but coerced or trimmed). */
    dimseStatus?: number;
  }): Promise<void>;
  /** `differences`: for an export-conflict, where the PACS's copy differs (tag paths, no values). */
  srExportFailed(ev: {
    record: ExportRecord;
    code: ErrorCode;
    message: string;
    differences?: readonly string[];
  }): Promise<void>;
}

export interface DraftExportDeps {
  /** The model that wrote the findings: TID 4019 Algorithm Identification and the Device UID. */
  readonly identity: ModelIdentity;
  readonly routes: readonly RouteConfig[];
  readonly defaultDestination: string;
  readonly destinations: ReadonlyMap<string, RoutedDestination>;
  readonly recorder: ExportRecorder;
  /** What was exported where; finds the predecessor a new model version's draft replaces. */
  readonly ledger: Pick<SrExportLedger, 'findPredecessor' | 'stage'>;
  /** Unicode fonts for PDF companions (loaded once at start-up when any destination wants one). */
  readonly pdfFonts?: readonly PdfFont[] | undefined;
}

/** One destination's outcome (a routing rule may send the draft to several, issue 11). */
export interface DestinationExport {
  readonly destination: string;
  readonly srSopInstanceUid: string;
  readonly delivery: Delivery;
  readonly location: string;
  readonly pdfSopInstanceUid?: string;
  readonly predecessorSopInstanceUid?: string;
}

export interface DraftExportResult {
  readonly srSopInstanceUid: string;
  /** How the SR arrived (sr-destination.ts Delivery). */
  readonly delivery: Delivery;
  readonly destination: string;
  /** Name of the route that chose the destination; null when none matched (defaultDestination). */
  readonly route: string | null;
  readonly location: string;
  readonly pdfSopInstanceUid?: string;
  readonly predecessorSopInstanceUid?: string;
  /** Version of the study's result the draft describes (migration 0019). */
  readonly studyVersion: number;
  /**
   * Every destination the draft went to, in the rule's order (the fields above are the first
   * one's, as before issue 11). Absent in results of drafts staged before it.
   */
  readonly destinations?: readonly DestinationExport[];
}

export async function exportDraft(
  deps: DraftExportDeps,
  /** `studyVersion`: the version of the study's result the job describes (migration 0019); default 1. */
  job: { readonly id: number; readonly studyInstanceUid: string; readonly studyVersion?: number },
  /** `studyModalities`: every modality among the study's instances, for the routes' `match.modality`. */
  draft: {
    readonly described: DescribedImages;
    readonly studyModalities: readonly string[];
    /** The local AEs the study's instances were sent to, for the routes' `match.calledAeTitle`. */
    readonly studyCalledAeTitles?: readonly string[];
    /** The routing decision made on the study's facts (routing.ts); absent: routed on the two lists above. */
    readonly routing?: RoutingDecision;
  },
  log: Logger,
): Promise<DraftExportResult> {
  const { findings, sources, skipped } = draft.described;
  // The matching route's name goes to the log and the job result: an operator sees which rule
  // sent a draft where (config `routes[].name`).
  const decision =
    draft.routing ??
    (() => {
      const r = routeStudy(deps.routes, deps.defaultDestination, draft.studyModalities, draft.studyCalledAeTitles);
      return { route: r.route, destinations: [r.destination] };
    })();
  const route = decision.route;
  const targets = decision.destinations.map((name) => {
    const routed = deps.destinations.get(name);
    if (!routed) throw new RadScribeError(ErrorCode.ConfigInvalid, `destination "${name}" is not configured`);
    return { destName: name, routed };
  });
  if (targets.length === 0) throw new RadScribeError(ErrorCode.Internal, 'no destination chosen for the draft');

  const info = deps.identity;
  const algorithm = {
    name: info.name,
    version: info.version,
    manufacturer: 'RadScribe',
    deviceUid: info.deviceUid,
    parameters: info.prompt,
    fixture: info.fixture,
  };
  // One draft per destination: each has its own SR profile and PDF wish, and its own predecessor
  // (the draft last sent there). Drafts of the same profile share their SOP Instance UID (derived
  // from study, model, version and inputs, draft-policy.ts); the ledger keys rows by (UID, destination).
  const groups: { destName: string; destination: SrDestination; objects: (StagedObject & { part10: Uint8Array })[] }[] =
    [];
  // Built once per SR profile and predecessor: destinations that get the same UID get the same
  // bytes (the Content Date/Time would differ between two builds), so no two PACS hold different
  // content under one SOP Instance UID.
  const built = new Map<string, ReturnType<typeof buildDraftSr>>();
  for (const { destName, routed } of targets) {
    const build = (predecessor?: Parameters<typeof buildDraftSr>[0]['predecessor']) => {
      const key = `${routed.srProfile}|${predecessor?.map((p) => p.sopInstanceUid).join(',') ?? ''}`;
      const done = built.get(key);
      if (done) return done;
      const sr = buildOne(predecessor);
      built.set(key, sr);
      return sr;
    };
    const buildOne = (predecessor?: Parameters<typeof buildDraftSr>[0]['predecessor']) =>
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

    const base = {
      studyInstanceUid: job.studyInstanceUid,
      deviceUid: algorithm.deviceUid,
      destination: destName,
      jobId: job.id,
    };
    const srDetail: StagedDraftDetail = {
      route,
      ...(draft.routing ? { routingWhy: draft.routing.why } : {}),
      selected: draft.described.selected,
      described: findings.length,
      skipped,
      ...(prior ? { predecessorSopInstanceUid: prior.sopInstanceUid } : {}),
      ...(sr.sourceAttributeNotes.length > 0 ? { sourceAttributes: sr.sourceAttributeNotes } : {}),
      studyVersion: sr.studyVersion,
    };
    const objects: (StagedObject & { part10: Uint8Array })[] = [
      {
        record: {
          ...base,
          sopInstanceUid: sr.sopInstanceUid,
          sopClassUid: sr.dataset.SOPClassUID as string,
          seriesInstanceUid: sr.seriesInstanceUid,
          objectKind: ExportedObjectKind.Sr,
        },
        part10: sr.part10,
        staged: srDetail,
      },
    ];
    if (routed.pdfCompanion) {
      if (!deps.pdfFonts) {
        throw new RadScribeError(
          ErrorCode.ConfigInvalid,
          `destination "${destName}" wants a PDF companion but no PDF fonts are loaded`,
        );
      }
      const pdf = await buildEncapsulatedPdf({ sr, fonts: deps.pdfFonts });
      objects.push({
        record: {
          ...base,
          sopInstanceUid: pdf.sopInstanceUid,
          sopClassUid: pdf.dataset.SOPClassUID as string,
          seriesInstanceUid: pdf.seriesInstanceUid,
          objectKind: ExportedObjectKind.Pdf,
        },
        part10: pdf.part10,
        staged: { companionOf: sr.sopInstanceUid },
      });
    }
    groups.push({ destName, destination: routed.destination, objects });
    log.info('draft SR built', {
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
  }
  // Staged before the first byte leaves, for every destination: a retry of this job resends these
  // bytes (resendStagedDraft), to the destinations that did not get them.
  await deps.ledger.stage(
    groups.flatMap((g) =>
      g.objects.map((o) => ({ record: o.record, part10: o.part10, sha256: sha256(o.part10), staged: o.staged })),
    ),
  );
  const result = await deliverAll(
    deps.recorder,
    groups.map((g) => ({ destination: g.destination, objects: g.objects, delivered: [] })),
    log,
  );
  log.info('draft SR exported', {
    srSopInstanceUid: result.srSopInstanceUid,
    destinations: (result.destinations ?? []).map((d) => d.destination),
    route,
  });
  return result;
}

/** What a staged SR row keeps for a resend (table sr_exports.staged): UIDs, counts and codes only. */
export interface StagedDraftDetail {
  readonly route: string | null;
  /** Why the rule matched (routing.ts RoutingDecision.why): UIDs, AE titles and header values of the rules' conditions. */
  readonly routingWhy?: string;
  readonly selected: number;
  readonly described: number;
  readonly skipped: readonly SkippedImage[];
  readonly predecessorSopInstanceUid?: string;
  readonly sourceAttributes?: readonly SourceAttributeNote[];
  /** The version of the study's result this draft describes (migration 0019). */
  readonly studyVersion?: number;
}

interface StagedObject {
  readonly record: ExportRecord;
  /** Undefined when an earlier attempt delivered it. */
  readonly part10: Uint8Array | undefined;
  readonly staged: object;
  readonly location?: string;
}

function sha256(b: Uint8Array): string {
  return createHash('sha256').update(b).digest('hex');
}

/**
 * Send the objects not yet delivered in one sendAll, record each outcome (ledger row and audit
 * event), and throw when any failed: a permanent error first (an export-conflict above all), so a
 * job that cannot succeed by retrying fails for good; else the transient one, and the job queue
 * retries the job (which resends the staged bytes).
 */
async function deliver(
  recorder: ExportRecorder,
  destination: SrDestination,
  objects: readonly StagedObject[],
  delivered: readonly StagedObject[],
  log: Logger,
): Promise<DraftExportResult> {
  const toSend = objects.filter((o): o is StagedObject & { part10: Uint8Array } => o.part10 !== undefined);
  // Nothing left for this destination (an earlier attempt delivered it all): no call at all.
  const results =
    toSend.length === 0
      ? []
      : await destination.sendAll(
          toSend.map(
            (o): OutgoingSr => ({
              studyInstanceUid: o.record.studyInstanceUid,
              sopInstanceUid: o.record.sopInstanceUid,
              part10: o.part10,
            }),
          ),
        );
  const errors: RadScribeError[] = [];
  const outcome = new Map<string, { location: string; delivery: Delivery }>();
  for (const o of delivered) outcome.set(o.record.sopInstanceUid, { location: o.location ?? '', delivery: 'stored' });
  for (const [i, r] of results.entries()) {
    const o = toSend[i] as (typeof toSend)[number];
    const detail = o.staged as { sourceAttributes?: readonly SourceAttributeNote[] };
    if (r.ok) {
      await recorder.srExported({
        record: o.record,
        route: (o.staged as Partial<StagedDraftDetail>).route ?? srRouteOf(objects),
        location: r.location,
        delivery: r.delivery,
        ...(detail.sourceAttributes && detail.sourceAttributes.length > 0
          ? { sourceAttributes: detail.sourceAttributes }
          : {}),
        ...(r.dimseStatus !== undefined ? { dimseStatus: r.dimseStatus } : {}),
      });
      outcome.set(o.record.sopInstanceUid, { location: r.location, delivery: r.delivery });
      if (r.delivery !== 'stored')
        log.info('export already present, identical', { sopInstanceUid: o.record.sopInstanceUid });
    } else {
      await recorder.srExportFailed({
        record: o.record,
        code: r.error.code,
        message: normalizeErrorString(r.error),
        ...(r.error instanceof ExportConflictError ? { differences: r.error.differences } : {}),
      });
      errors.push(r.error);
    }
  }
  const permanent =
    errors.find((e) => e instanceof ExportConflictError) ?? errors.find((e) => !RETRYABLE_CODES.has(e.code));
  if (permanent ?? errors[0]) throw permanent ?? errors[0];
  const srObj = objects.find((o) => o.record.objectKind === ExportedObjectKind.Sr) as StagedObject;
  const pdfObj = objects.find((o) => o.record.objectKind === ExportedObjectKind.Pdf);
  const srDetail = srObj.staged as StagedDraftDetail;
  const sent = outcome.get(srObj.record.sopInstanceUid) ?? { location: '', delivery: 'stored' as const };
  return {
    srSopInstanceUid: srObj.record.sopInstanceUid,
    destination: srObj.record.destination,
    route: srDetail.route ?? null,
    location: sent.location,
    delivery: sent.delivery,
    ...(pdfObj ? { pdfSopInstanceUid: pdfObj.record.sopInstanceUid } : {}),
    ...(srDetail.predecessorSopInstanceUid ? { predecessorSopInstanceUid: srDetail.predecessorSopInstanceUid } : {}),
    // Drafts staged before study versions (migration 0019) describe version 1.
    studyVersion: srDetail.studyVersion ?? 1,
  };
}

/** The route a group's SR was staged under (its PDF companion's audit names it too). */
function srRouteOf(objects: readonly StagedObject[]): string | null {
  const sr = objects.find((o) => o.record.objectKind === ExportedObjectKind.Sr);
  return (sr?.staged as Partial<StagedDraftDetail> | undefined)?.route ?? null;
}

/**
 * {@link deliver} to each destination in turn — a failure at one does not keep the draft from the
 * others — then throw as deliver does, over all of them: a permanent error first. The job queue's
 * retry resends only what some destination did not get (the staged rows not yet sent).
 */
async function deliverAll(
  recorder: ExportRecorder,
  groups: readonly {
    destination: SrDestination;
    objects: readonly StagedObject[];
    delivered: readonly StagedObject[];
  }[],
  log: Logger,
): Promise<DraftExportResult> {
  const results: DraftExportResult[] = [];
  const errors: RadScribeError[] = [];
  for (const g of groups) {
    try {
      results.push(await deliver(recorder, g.destination, g.objects, g.delivered, log));
    } catch (err: unknown) {
      errors.push(
        err instanceof RadScribeError ? err : new RadScribeError(ErrorCode.Internal, normalizeErrorString(err)),
      );
    }
  }
  const permanent =
    errors.find((e) => e instanceof ExportConflictError) ?? errors.find((e) => !RETRYABLE_CODES.has(e.code));
  if (permanent ?? errors[0]) throw permanent ?? errors[0];
  const first = results[0] as DraftExportResult;
  return {
    ...first,
    destinations: results.map(
      (r): DestinationExport => ({
        destination: r.destination,
        srSopInstanceUid: r.srSopInstanceUid,
        delivery: r.delivery,
        location: r.location,
        ...(r.pdfSopInstanceUid ? { pdfSopInstanceUid: r.pdfSopInstanceUid } : {}),
        ...(r.predecessorSopInstanceUid ? { predecessorSopInstanceUid: r.predecessorSopInstanceUid } : {}),
      }),
    ),
  };
}

/**
 * A retry of a job whose draft an earlier attempt staged: resend the staged bytes of the objects
 * not delivered yet, and report the job result from the staged detail. The model does not run.
 */
export async function resendStagedDraft(
  deps: Pick<DraftExportDeps, 'destinations' | 'recorder'>,
  staged: readonly StagedExport[],
  log: Logger,
): Promise<DraftExportResult & Pick<StagedDraftDetail, 'selected' | 'described' | 'skipped'>> {
  const sr = staged.find((s) => s.record.objectKind === ExportedObjectKind.Sr);
  if (!sr) throw new RadScribeError(ErrorCode.Internal, 'staged draft has no SR');
  // Grouped by destination, in the order staged (the SR of each destination before its PDF).
  const byDest = new Map<string, StagedObject[]>();
  for (const s of staged) {
    const list = byDest.get(s.record.destination) ?? [];
    list.push({ record: s.record, part10: s.part10, staged: s.staged, location: s.location });
    byDest.set(s.record.destination, list);
  }
  const groups = [...byDest].map(([name, objects]) => {
    const routed = deps.destinations.get(name);
    if (!routed) throw new RadScribeError(ErrorCode.ConfigInvalid, `destination "${name}" is not configured`);
    return { destination: routed.destination, objects, delivered: objects.filter((o) => o.part10 === undefined) };
  });
  log.info('resending staged draft', {
    srSopInstanceUid: sr.record.sopInstanceUid,
    destinations: [...byDest.keys()],
    pending: staged
      .filter((o) => o.part10 !== undefined)
      .map((o) => `${o.record.destination}:${o.record.sopInstanceUid}`),
  });
  const result = await deliverAll(deps.recorder, groups, log);
  const detail = sr.staged as unknown as StagedDraftDetail;
  return { ...result, selected: detail.selected, described: detail.described, skipped: detail.skipped };
}
