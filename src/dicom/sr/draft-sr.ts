import { SrValidationError } from '../../errors.js';
import { isValidUid, type NaturalDataset } from '../dataset.js';
import { type Code, code, IMAGING_PROCEDURE, ImagingProcedureByModality } from './coding.js';
import { type ContainerContentItem, sanitizeUnlimitedText } from './content-items.js';
import {
  DRAFT_PRELIMINARY_FLAG,
  DRAFT_SR_SERIES_NUMBER,
  DRAFT_VERIFICATION_FLAG,
  draftCompletionDescription,
  draftDisclaimer,
  draftInstanceNumber,
  draftPurposeOfReference,
  draftSeriesDescription,
  draftSeriesInstanceUid,
  draftSopInstanceUid,
  draftTrackingUid,
  FIRST_STUDY_VERSION,
  isSrProfile,
  SR_PROFILE_SOP_CLASS,
  SR_PROFILES,
  SrProfile,
} from './draft-policy.js';
import { copySourceAttributes, type SourceAttributeNote } from './source-attributes.js';
import {
  buildSrDataset,
  CompletionFlag,
  checkPredecessors,
  collectEvidence,
  type PredecessorDocument,
  writePart10,
} from './sr-document.js';
import {
  AlgorithmIdentification,
  BasicDiagnosticImagingReport,
  DeviceObserverIdentifyingAttributes,
  type ImageFinding,
  ImageLibrary,
  LanguageOfContentItemAndDescendants,
  MeasurementReport,
  MeasurementsAndQualitativeEvaluations,
  ObservationContext,
  ObserverContext,
  TrackingIdentifier,
} from './templates.js';
import { isShortOrLongString } from './vr.js';

/**
 * The draft SR of one study: the model's findings as TID 2000 (or TID 1500 for the AIR profile)
 * content, under RadScribe's draft policy (draft-policy.ts: PRELIMINARY / UNVERIFIED, disclaimer,
 * series, UIDs), written by the generic SR writer (sr-document.ts) into the source study as a new
 * series (reference/dicom-sr-and-audit.md §3). Pure: datasets in, bytes out; no I/O (STYLE §2.1).
 */

export interface DraftSrFinding {
  readonly sopClassUid: string;
  readonly sopInstanceUid: string;
  /** 1-based frame of a multi-frame source image. */
  readonly frameNumber?: number;
  /** Model output; control characters other than CR/LF/FF/TAB become U+FFFD (sanitizeUnlimitedText). */
  readonly text: string;
}

/**
 * The model that wrote the findings, as data: the inference side's identity (name, version, Device
 * UID, fixture; src/inference/model-identity.ts) plus what the SR says about it. Typed here
 * structurally so the SR code does not depend on the inference layer.
 */
export interface DraftSrAlgorithm {
  /** Algorithm Name (TID 4019) and Manufacturer's Model Name (0008,1090). */
  readonly name: string;
  /** Algorithm Version (TID 4019) and Software Versions (0018,1020). */
  readonly version: string;
  /** Algorithm Manufacturer (TID 4019) and Manufacturer (0008,0070). */
  readonly manufacturer: string;
  /** Device UID (0018,1002) of the model: changes whenever the weights change (IHE AIR). */
  readonly deviceUid: string;
  /** Algorithm Parameters (TID 4019), e.g. the prompt. */
  readonly parameters?: string;
  /** True when the model is a test fixture: the series and disclaimer then say the output is meaningless. */
  readonly fixture?: boolean;
  /** Device Serial Number (0018,1000); defaults to the Device UID. */
  readonly deviceSerialNumber?: string;
}

export interface DraftSrParams {
  /** Headers of the input instances (the evidence); patient and study attributes come from the first. */
  readonly sources: readonly NaturalDataset[];
  readonly findings: readonly DraftSrFinding[];
  readonly algorithm: DraftSrAlgorithm;
  /** Completion Flag; default COMPLETE only if every source image has a finding. */
  readonly completionComplete?: boolean;
  /** Content / Instance Creation date-time; default now. */
  readonly now?: Date;
  /** Output profile; default `report`. */
  readonly profile?: SrProfile;
  /**
   * Earlier drafts this one replaces (a re-run with a new model version, or the previous version of
   * the study's result): Predecessor Documents Sequence (0040,A360).
   */
  readonly predecessor?: readonly PredecessorDocument[];
  /**
   * Version of the study's result this draft describes (src/ingest/study-lifecycle.ts, migration
   * 0019); default 1. Part of the SOP Instance UID and the Instance Number.
   */
  readonly studyVersion?: number;
}

/** A finding as written (text after sanitizeUnlimitedText), for companions such as the PDF. */
export interface WrittenFinding {
  readonly sopClassUid: string;
  readonly sopInstanceUid: string;
  readonly frameNumber?: number;
  readonly text: string;
}

export interface DraftSr {
  readonly dataset: NaturalDataset;
  readonly part10: Uint8Array;
  readonly sopInstanceUid: string;
  readonly seriesInstanceUid: string;
  readonly studyInstanceUid: string;
  readonly profile: SrProfile;
  /** Version of the study's result (1 unless given). */
  readonly studyVersion: number;
  /** Findings as written into the content tree, in input order. */
  readonly findings: readonly WrittenFinding[];
  /** The disclaimer text item's value. */
  readonly disclaimer: string;
  /** Algorithm identification as written (TID 4019 and Contributing Equipment). */
  readonly algorithm: {
    readonly name: string;
    readonly version: string;
    readonly manufacturer: string;
    readonly deviceUid: string;
    readonly parameters: string | undefined;
    readonly fixture: boolean;
  };
  /** The root CONTAINER of the content tree. */
  readonly content: ContainerContentItem;
  /**
   * Source attributes normalised or dropped on the way into the SR (tags and reasons, no values):
   * for the audit event of the export.
   */
  readonly sourceAttributeNotes: readonly SourceAttributeNote[];
}

const OP = 'buildDraftSr';

function checkLo(what: string, v: unknown): string {
  if (!isShortOrLongString(v, 64)) {
    throw new SrValidationError(
      `${OP}: ${what} must be a non-empty LO string (≤ 64 characters, no backslash or control characters)`,
    );
  }
  return v;
}

/** Build the draft Comprehensive SR for one study and serialise it as Part 10 (Explicit VR LE). */
export function buildDraftSr(params: DraftSrParams): DraftSr {
  if (params === null || typeof params !== 'object') throw new SrValidationError(`${OP}: params must be an object`);
  const { sources, findings, algorithm } = params;
  if (!Array.isArray(sources) || sources.length === 0)
    throw new SrValidationError(`${OP}: sources must be a non-empty array`);
  if (!Array.isArray(findings) || findings.length === 0)
    throw new SrValidationError(`${OP}: findings must be a non-empty array`);
  if (algorithm === null || typeof algorithm !== 'object')
    throw new SrValidationError(`${OP}: algorithm must be an object`);
  const name = checkLo('algorithm.name', algorithm.name);
  const version = checkLo('algorithm.version', algorithm.version);
  const manufacturer = checkLo('algorithm.manufacturer', algorithm.manufacturer);
  if (!isValidUid(algorithm.deviceUid)) throw new SrValidationError(`${OP}: algorithm.deviceUid must be a valid UID`);
  const deviceUid = algorithm.deviceUid;
  const serial =
    algorithm.deviceSerialNumber === undefined
      ? deviceUid
      : checkLo('algorithm.deviceSerialNumber', algorithm.deviceSerialNumber);
  if (
    algorithm.parameters !== undefined &&
    (typeof algorithm.parameters !== 'string' || algorithm.parameters.trim() === '')
  ) {
    throw new SrValidationError(`${OP}: algorithm.parameters must be a non-empty string when given`);
  }
  const now = params.now ?? new Date();
  if (!(now instanceof Date) || Number.isNaN(now.getTime()))
    throw new SrValidationError(`${OP}: now must be a valid Date`);
  if (params.completionComplete !== undefined && typeof params.completionComplete !== 'boolean') {
    throw new SrValidationError(`${OP}: completionComplete must be a boolean`);
  }
  const profile = params.profile ?? SrProfile.Report;
  if (!isSrProfile(profile)) {
    throw new SrValidationError(`${OP}: profile must be one of ${[...SR_PROFILES].join(', ')}`);
  }
  const predecessors = checkPredecessors(OP, 'predecessor', params.predecessor);
  const studyVersion = params.studyVersion ?? FIRST_STUDY_VERSION;
  if (!Number.isInteger(studyVersion) || studyVersion < FIRST_STUDY_VERSION)
    throw new SrValidationError(`${OP}: studyVersion must be an integer ≥ ${FIRST_STUDY_VERSION}`);
  const evidence = collectEvidence(OP, sources);
  const { instances, studyInstanceUid } = evidence;

  // Findings must point at evidence we list; frames must exist.
  const described = new Set<string>();
  const imageFindings: ImageFinding[] = findings.map((f, i) => {
    if (f === null || typeof f !== 'object') throw new SrValidationError(`${OP}: findings[${i}] must be an object`);
    if (!isValidUid(f.sopInstanceUid))
      throw new SrValidationError(`${OP}: findings[${i}].sopInstanceUid must be a valid UID`);
    if (!isValidUid(f.sopClassUid))
      throw new SrValidationError(`${OP}: findings[${i}].sopClassUid must be a valid UID`);
    const src = instances.get(f.sopInstanceUid);
    if (!src) throw new SrValidationError(`${OP}: findings[${i}].sopInstanceUid is not among the sources`);
    if (src.sopClassUid !== f.sopClassUid)
      throw new SrValidationError(`${OP}: findings[${i}].sopClassUid differs from the source's SOPClassUID`);
    if (f.frameNumber !== undefined) {
      if (!Number.isInteger(f.frameNumber) || f.frameNumber < 1) {
        throw new SrValidationError(`${OP}: findings[${i}].frameNumber must be a positive integer`);
      }
      if (src.numberOfFrames !== undefined && f.frameNumber > src.numberOfFrames) {
        throw new SrValidationError(`${OP}: findings[${i}].frameNumber exceeds the source's NumberOfFrames`);
      }
    }
    if (typeof f.text !== 'string') throw new SrValidationError(`${OP}: findings[${i}].text must be a string`);
    const text = sanitizeUnlimitedText(f.text);
    if (text.trim().length === 0) throw new SrValidationError(`${OP}: findings[${i}].text must be non-empty`);
    described.add(f.sopInstanceUid);
    return {
      text,
      sopClassUid: f.sopClassUid,
      sopInstanceUid: f.sopInstanceUid,
      ...(f.frameNumber === undefined ? {} : { frameNumbers: [f.frameNumber] }),
    };
  });

  const seriesInstanceUid = draftSeriesInstanceUid(studyInstanceUid, deviceUid);
  const sopInstanceUid = draftSopInstanceUid(studyInstanceUid, deviceUid, instances.keys(), profile, studyVersion);
  // A draft never names itself as its predecessor (PS3.3 C.17.2.1: an earlier document).
  if (predecessors.some((p) => p.sopInstanceUid === sopInstanceUid))
    throw new SrValidationError(`${OP}: predecessor must not be the draft itself`);
  const fixture = algorithm.fixture === true;
  const parameters = algorithm.parameters === undefined ? undefined : sanitizeUnlimitedText(algorithm.parameters);
  const disclaimer = draftDisclaimer(fixture);

  const observerContext = new ObserverContext({
    observerIdentifyingAttributes: new DeviceObserverIdentifyingAttributes({
      uid: deviceUid,
      name,
      manufacturer,
      modelName: name,
      serialNumber: serial,
    }),
  });
  const algorithmIdentification = new AlgorithmIdentification({
    name,
    version,
    manufacturer,
    ...(parameters === undefined ? {} : { parameters: [parameters] }),
  });
  const root =
    profile === SrProfile.Air
      ? new MeasurementReport({
          language: new LanguageOfContentItemAndDescendants(),
          observationContext: new ObservationContext({ observerContext }),
          procedureReported: proceduresReported(sources),
          imageLibrary: new ImageLibrary({
            images: [...instances.values()].map((inst) => ({
              sopClassUid: inst.sopClassUid,
              sopInstanceUid: inst.sopInstanceUid,
            })),
          }),
          measurementGroups: imageFindings.map(
            (f, i) =>
              new MeasurementsAndQualitativeEvaluations({
                trackingIdentifier: new TrackingIdentifier({
                  identifier: `AI draft finding ${i + 1}`,
                  uid: draftTrackingUid(sopInstanceUid, i),
                }),
                algorithmIdentification,
                text: f.text,
                image: f,
              }),
          ),
          disclaimer,
        }).root
      : new BasicDiagnosticImagingReport({
          language: new LanguageOfContentItemAndDescendants(),
          observerContext,
          algorithmIdentification,
          findings: imageFindings,
          disclaimer,
        }).root;

  // Completion Flag (PS3.3 §C.17.2.1): COMPLETE only when every input image was described.
  const missing = [...instances.keys()].filter((uid) => !described.has(uid)).length;
  const complete = params.completionComplete ?? missing === 0;

  const sourceAttributes = copySourceAttributes(evidence.first);
  const ds = buildSrDataset({
    sourceAttributes,
    sopClassUid: SR_PROFILE_SOP_CLASS[profile],
    sopInstanceUid,
    seriesInstanceUid,
    seriesNumber: DRAFT_SR_SERIES_NUMBER,
    seriesDescription: draftSeriesDescription(fixture),
    instanceNumber: draftInstanceNumber(studyVersion),
    evidence,
    // General Equipment and Contributing Equipment: the device that made the content is the model (IHE AIR).
    equipment: {
      manufacturer,
      modelName: name,
      softwareVersions: version,
      serialNumber: serial,
      deviceUid,
      purposeOfReference: draftPurposeOfReference(profile),
    },
    preliminaryFlag: DRAFT_PRELIMINARY_FLAG,
    completionFlag: complete ? CompletionFlag.Complete : CompletionFlag.Partial,
    completionFlagDescription: draftCompletionDescription(instances.size - missing, instances.size),
    verificationFlag: DRAFT_VERIFICATION_FLAG,
    predecessors,
    content: root,
    now,
  });

  return {
    dataset: ds,
    part10: writePart10(ds),
    sopInstanceUid,
    seriesInstanceUid,
    studyInstanceUid,
    profile,
    studyVersion,
    findings: imageFindings.map((f) => ({
      sopClassUid: f.sopClassUid,
      sopInstanceUid: f.sopInstanceUid,
      ...(f.frameNumbers?.[0] === undefined ? {} : { frameNumber: f.frameNumbers[0] }),
      text: f.text,
    })),
    disclaimer,
    algorithm: { name, version, manufacturer, deviceUid, parameters, fixture },
    content: root,
    sourceAttributeNotes: sourceAttributes.notes,
  };
}

/**
 * Procedure Reported (121058, DCM) values for TID 1500: the sources' Procedure Code Sequence (0008,1032)
 * items when they are complete codes, else one imaging procedure per source modality (IHE AIR
 * §6.5.3.1: the imaging procedure analyzed, not the algorithm). De-duplicated, first-seen order.
 */
function proceduresReported(sources: readonly NaturalDataset[]): Code[] {
  const out = new Map<string, Code>();
  const add = (c: Code) => out.set(`${c.scheme}|${c.value}`, c);
  for (const ds of sources) {
    const seq = Array.isArray(ds.ProcedureCodeSequence) ? (ds.ProcedureCodeSequence as NaturalDataset[]) : [];
    for (const item of seq) {
      // A meaning the source's character set could not decode is not written (source-attributes.ts).
      if ([item.CodeValue, item.CodeMeaning].some((v) => typeof v === 'string' && v.includes('\ufffd'))) continue;
      try {
        add(
          code(String(item.CodeValue ?? ''), String(item.CodingSchemeDesignator ?? ''), String(item.CodeMeaning ?? '')),
        );
      } catch {
        // An incomplete or over-long code in the source: fall back to the modality below.
      }
    }
  }
  if (out.size === 0) {
    for (const ds of sources) {
      const modality = typeof ds.Modality === 'string' ? ds.Modality.trim().toUpperCase() : '';
      add(ImagingProcedureByModality[modality] ?? IMAGING_PROCEDURE);
    }
  }
  return [...out.values()];
}
