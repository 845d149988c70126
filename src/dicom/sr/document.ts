import { createHash } from 'node:crypto';
import dcmjs from 'dcmjs';
import { SrValidationError } from '../../errors.js';
import { isValidUid, type NaturalDataset } from '../dataset.js';
import { type Code, Codes, code, IMAGING_PROCEDURE, ImagingProcedureByModality } from './coding.js';
import { type ContainerContentItem, codeToItem, sanitizeUnlimitedText } from './content-items.js';
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
 * The draft SR document: a Comprehensive SR (PS3.3 §A.35.3) carrying TID 2000 content, placed in the
 * source study as a new series, flagged PRELIMINARY / UNVERIFIED (reference/dicom-sr-and-audit.md §3).
 * Pure: works on datasets passed in and returns bytes; no I/O (STYLE §2.1).
 */

/** Comprehensive SR Storage (PS3.4 Table B.5-1). */
export const COMPREHENSIVE_SR_SOP_CLASS_UID = '1.2.840.10008.5.1.4.1.1.88.33';
/** Comprehensive 3D SR Storage (PS3.4 Table B.5-1), required by IHE AIR for TID 1500 results. */
export const COMPREHENSIVE_3D_SR_SOP_CLASS_UID = '1.2.840.10008.5.1.4.1.1.88.34';

/**
 * Output profiles, chosen per destination (config `srProfile`):
 * - `report`: Comprehensive SR, TID 2000 Basic Diagnostic Imaging Report (narrative findings);
 * - `air`: Comprehensive 3D SR, TID 1500 Measurement Report per IHE AI Results (AIR Rev 1.1 §6.5.3.1).
 */
export const SrProfile = { Report: 'report', Air: 'air' } as const;
export type SrProfile = (typeof SrProfile)[keyof typeof SrProfile];
const SR_PROFILES: ReadonlySet<string> = new Set(Object.values(SrProfile));

/** SOP Class per profile. */
export const SR_PROFILE_SOP_CLASS: Readonly<Record<SrProfile, string>> = {
  report: COMPREHENSIVE_SR_SOP_CLASS_UID,
  air: COMPREHENSIVE_3D_SR_SOP_CLASS_UID,
};
/** Explicit VR Little Endian (PS3.5 §A.2). */
export const EXPLICIT_VR_LITTLE_ENDIAN = '1.2.840.10008.1.2.1';
/** RadScribe's Implementation Class UID (PS3.7 §D.3.3.2), a UUID-derived 2.25 root (PS3.5 §B.2). */
export const RADSCRIBE_IMPLEMENTATION_CLASS_UID = '2.25.88938780574547241793150963607061498973';
/** Implementation Version Name (0002,0013), SH ≤ 16 characters. */
export const RADSCRIBE_IMPLEMENTATION_VERSION_NAME = 'RADSCRIBE_0_1';
/** Fixed Series Number of the draft series, so operators can recognise it in every study. */
export const DRAFT_SR_SERIES_NUMBER = 9901;
/** Series Description (LO, ≤ 64 characters and, to be safe with byte-counting validators, ≤ 64 UTF-8 bytes). */
export const DRAFT_SR_SERIES_DESCRIPTION = 'AI DRAFT – UNVERIFIED – NOT FOR DIAGNOSTIC USE';
/** Series Description when the model is a test fixture (its output is random text). */
export const FIXTURE_SR_SERIES_DESCRIPTION = 'TEST FIXTURE – OUTPUT IS MEANINGLESS – UNVERIFIED AI DRAFT';
/** Disclaimer TEXT in the content tree (Comment, 121106 DCM). */
export const DRAFT_SR_DISCLAIMER =
  'UNVERIFIED AI DRAFT. Generated automatically by a vision-language model and not reviewed by a physician. NOT FOR DIAGNOSTIC USE.';
export const FIXTURE_DISCLAIMER_PREFIX = 'TEST FIXTURE – OUTPUT IS MEANINGLESS. ';

export interface DraftSrFinding {
  readonly sopClassUid: string;
  readonly sopInstanceUid: string;
  /** 1-based frame of a multi-frame source image. */
  readonly frameNumber?: number;
  /** Model output; control characters other than CR/LF/FF/TAB become U+FFFD (sanitizeUnlimitedText). */
  readonly text: string;
}

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

/**
 * A document this draft replaces (PS3.3 §C.17.2 Predecessor Documents Sequence (0040,A360), Type 1C:
 * "required if this SR Document replaces or amends one or more other SR Documents"), e.g. the draft of
 * an earlier model version for the same inputs.
 */
export interface PredecessorDocument {
  readonly sopClassUid: string;
  readonly sopInstanceUid: string;
  readonly seriesInstanceUid: string;
  readonly studyInstanceUid: string;
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
  /** Earlier drafts this one replaces (a re-run with a new model version): Predecessor Documents Sequence. */
  readonly predecessor?: readonly PredecessorDocument[];
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
}

/**
 * A UUID-derived UID (PS3.5 §B.2): "2.25." + the decimal value of a 128-bit integer. The integer is
 * the first 16 bytes of SHA-256 over the parts, with the RFC 9562 version-8 and variant bits set so it
 * is a well-formed (name-based, custom) UUID. Deterministic: the same parts give the same UID.
 */
export function deriveUid(...parts: readonly string[]): string {
  const digest = createHash('sha256')
    .update(JSON.stringify(['radscribe-uid-v1', ...parts]))
    .digest();
  const b = Buffer.from(digest.subarray(0, 16));
  b[6] = ((b[6] ?? 0) & 0x0f) | 0x80; // version 8
  b[8] = ((b[8] ?? 0) & 0x3f) | 0x80; // variant 10xx
  return `2.25.${BigInt(`0x${b.toString('hex')}`).toString(10)}`;
}

/** Series Instance UID of the draft series: one per (study, model Device UID). */
export function draftSeriesInstanceUid(studyInstanceUid: string, deviceUid: string): string {
  return deriveUid('series', studyInstanceUid, deviceUid);
}

/**
 * SOP Instance UID of the draft: (study, Device UID, sorted set of input SOP Instance UIDs), so a retry
 * re-sends the same instance and PACS de-duplicate it (dicom-sr-and-audit.md §4 "Idempotent export").
 */
export function draftSopInstanceUid(
  studyInstanceUid: string,
  deviceUid: string,
  inputSopInstanceUids: Iterable<string>,
  profile: SrProfile = SrProfile.Report,
): string {
  const sorted = [...new Set(inputSopInstanceUids)].sort();
  // The report profile keeps the label it had before profiles existed, so drafts already exported
  // re-send with the same UID; every other profile gets its own label and so its own UID.
  const label = profile === SrProfile.Report ? 'sr-instance' : `sr-instance:${profile}`;
  return deriveUid(label, studyInstanceUid, deviceUid, ...sorted);
}

/** SOP Instance UID of the Encapsulated PDF companion of an SR: one per SR instance, so retries de-duplicate too. */
export function draftPdfSopInstanceUid(srSopInstanceUid: string): string {
  return deriveUid('pdf-companion', srSopInstanceUid);
}

/**
 * Device UID (0018,1002) of a model bundle: the manifest's own `deviceUid` if it declares one, else a
 * UID derived from the SHA-256 of manifest.json, which changes whenever the weights (listed with their
 * hashes in the manifest) change, as IHE AIR requires. Same derivation as the gateway's.
 */
export function modelDeviceUid(manifestJsonBytes: Uint8Array, declaredDeviceUid?: string): string {
  if (declaredDeviceUid !== undefined) {
    if (!isValidUid(declaredDeviceUid))
      throw new SrValidationError('modelDeviceUid: manifest deviceUid is not a valid UID');
    return declaredDeviceUid;
  }
  return deriveUid('radscribe-model', createHash('sha256').update(manifestJsonBytes).digest('hex'));
}

interface SourceInstance {
  readonly sopClassUid: string;
  readonly sopInstanceUid: string;
  readonly seriesInstanceUid: string;
  readonly numberOfFrames: number | undefined;
}

function sourceUid(ds: NaturalDataset, i: number, keyword: string): string {
  const v = ds[keyword];
  if (!isValidUid(v))
    throw new SrValidationError(`buildDraftSr: sources[${i}].${keyword} is missing or not a valid UID`);
  return v;
}

function checkLo(what: string, v: unknown): string {
  if (!isShortOrLongString(v, 64)) {
    throw new SrValidationError(
      `buildDraftSr: ${what} must be a non-empty LO string (≤ 64 characters, no backslash or control characters)`,
    );
  }
  return v;
}

/** DA / TM / Timezone Offset From UTC in UTC, so the output does not depend on the host's zone (PS3.5 §6.2). */
export function dicomDateTime(d: Date): { date: string; time: string; offset: string } {
  const p = (n: number, w = 2) => String(n).padStart(w, '0');
  return {
    date: `${d.getUTCFullYear()}${p(d.getUTCMonth() + 1)}${p(d.getUTCDate())}`,
    time: `${p(d.getUTCHours())}${p(d.getUTCMinutes())}${p(d.getUTCSeconds())}.${p(d.getUTCMilliseconds(), 3)}`,
    offset: '+0000',
  };
}

/**
 * Patient (C.7.1.1), General Study (C.7.2.1), Patient Study (C.7.2.2) attributes copied from the source.
 * Size and weight are left out: they describe the acquisition, and sources often carry 0 (a dciodvfy warning).
 */
export const TYPE2_COPIED = [
  'PatientName',
  'PatientID',
  'PatientBirthDate',
  'PatientSex',
  'StudyDate',
  'StudyTime',
  'ReferringPhysicianName',
  'StudyID',
  'AccessionNumber',
] as const;
export const TYPE3_COPIED = [
  'IssuerOfPatientID',
  'OtherPatientIDsSequence',
  'PatientAge',
  'StudyDescription',
  'IssuerOfAccessionNumberSequence',
  'PatientIdentityRemoved',
  'DeidentificationMethod',
  'DeidentificationMethodCodeSequence',
] as const;

function present(v: unknown): boolean {
  return v !== undefined && v !== null && !(Array.isArray(v) && v.length === 0) && v !== '';
}

/** Build the draft Comprehensive SR for one study and serialise it as Part 10 (Explicit VR LE). */
export function buildDraftSr(params: DraftSrParams): DraftSr {
  if (params === null || typeof params !== 'object')
    throw new SrValidationError('buildDraftSr: params must be an object');
  const { sources, findings, algorithm } = params;
  if (!Array.isArray(sources) || sources.length === 0)
    throw new SrValidationError('buildDraftSr: sources must be a non-empty array');
  if (!Array.isArray(findings) || findings.length === 0)
    throw new SrValidationError('buildDraftSr: findings must be a non-empty array');
  if (algorithm === null || typeof algorithm !== 'object')
    throw new SrValidationError('buildDraftSr: algorithm must be an object');
  const name = checkLo('algorithm.name', algorithm.name);
  const version = checkLo('algorithm.version', algorithm.version);
  const manufacturer = checkLo('algorithm.manufacturer', algorithm.manufacturer);
  if (!isValidUid(algorithm.deviceUid))
    throw new SrValidationError('buildDraftSr: algorithm.deviceUid must be a valid UID');
  const deviceUid = algorithm.deviceUid;
  const serial =
    algorithm.deviceSerialNumber === undefined
      ? deviceUid
      : checkLo('algorithm.deviceSerialNumber', algorithm.deviceSerialNumber);
  if (
    algorithm.parameters !== undefined &&
    (typeof algorithm.parameters !== 'string' || algorithm.parameters.trim() === '')
  ) {
    throw new SrValidationError('buildDraftSr: algorithm.parameters must be a non-empty string when given');
  }
  const now = params.now ?? new Date();
  if (!(now instanceof Date) || Number.isNaN(now.getTime()))
    throw new SrValidationError('buildDraftSr: now must be a valid Date');
  if (params.completionComplete !== undefined && typeof params.completionComplete !== 'boolean') {
    throw new SrValidationError('buildDraftSr: completionComplete must be a boolean');
  }
  const profile = params.profile ?? SrProfile.Report;
  if (!SR_PROFILES.has(profile)) {
    throw new SrValidationError(`buildDraftSr: profile must be one of ${[...SR_PROFILES].join(', ')}`);
  }
  const predecessors = checkPredecessors(params.predecessor);

  // Sources: one study (the SR goes into the same study, PS3.3 §C.17.2: evidence of the current
  // requested procedure); de-duplicate repeated headers of the same instance.
  const first = sources[0] as NaturalDataset;
  const studyInstanceUid = sourceUid(first, 0, 'StudyInstanceUID');
  const instances = new Map<string, SourceInstance>();
  sources.forEach((ds, i) => {
    if (ds === null || typeof ds !== 'object')
      throw new SrValidationError(`buildDraftSr: sources[${i}] must be a dataset`);
    const study = sourceUid(ds, i, 'StudyInstanceUID');
    if (study !== studyInstanceUid) {
      throw new SrValidationError(
        `buildDraftSr: sources[${i}].StudyInstanceUID differs from sources[0]: all sources must share one study`,
      );
    }
    const inst: SourceInstance = {
      sopClassUid: sourceUid(ds, i, 'SOPClassUID'),
      sopInstanceUid: sourceUid(ds, i, 'SOPInstanceUID'),
      seriesInstanceUid: sourceUid(ds, i, 'SeriesInstanceUID'),
      numberOfFrames:
        Number.isInteger(Number(ds.NumberOfFrames)) && Number(ds.NumberOfFrames) > 0
          ? Number(ds.NumberOfFrames)
          : undefined,
    };
    const seen = instances.get(inst.sopInstanceUid);
    if (seen && (seen.sopClassUid !== inst.sopClassUid || seen.seriesInstanceUid !== inst.seriesInstanceUid)) {
      throw new SrValidationError(
        `buildDraftSr: sources[${i}] repeats SOPInstanceUID with a different SOP class or series`,
      );
    }
    if (!seen) instances.set(inst.sopInstanceUid, inst);
  });

  // Findings must point at evidence we list; frames must exist.
  const described = new Set<string>();
  const imageFindings: ImageFinding[] = findings.map((f, i) => {
    if (f === null || typeof f !== 'object')
      throw new SrValidationError(`buildDraftSr: findings[${i}] must be an object`);
    if (!isValidUid(f.sopInstanceUid))
      throw new SrValidationError(`buildDraftSr: findings[${i}].sopInstanceUid must be a valid UID`);
    if (!isValidUid(f.sopClassUid))
      throw new SrValidationError(`buildDraftSr: findings[${i}].sopClassUid must be a valid UID`);
    const src = instances.get(f.sopInstanceUid);
    if (!src) throw new SrValidationError(`buildDraftSr: findings[${i}].sopInstanceUid is not among the sources`);
    if (src.sopClassUid !== f.sopClassUid)
      throw new SrValidationError(`buildDraftSr: findings[${i}].sopClassUid differs from the source's SOPClassUID`);
    if (f.frameNumber !== undefined) {
      if (!Number.isInteger(f.frameNumber) || f.frameNumber < 1) {
        throw new SrValidationError(`buildDraftSr: findings[${i}].frameNumber must be a positive integer`);
      }
      if (src.numberOfFrames !== undefined && f.frameNumber > src.numberOfFrames) {
        throw new SrValidationError(`buildDraftSr: findings[${i}].frameNumber exceeds the source's NumberOfFrames`);
      }
    }
    if (typeof f.text !== 'string') throw new SrValidationError(`buildDraftSr: findings[${i}].text must be a string`);
    const text = sanitizeUnlimitedText(f.text);
    if (text.trim().length === 0) throw new SrValidationError(`buildDraftSr: findings[${i}].text must be non-empty`);
    described.add(f.sopInstanceUid);
    return {
      text,
      sopClassUid: f.sopClassUid,
      sopInstanceUid: f.sopInstanceUid,
      ...(f.frameNumber === undefined ? {} : { frameNumbers: [f.frameNumber] }),
    };
  });

  const seriesInstanceUid = draftSeriesInstanceUid(studyInstanceUid, deviceUid);
  const sopInstanceUid = draftSopInstanceUid(studyInstanceUid, deviceUid, instances.keys(), profile);
  const fixture = algorithm.fixture === true;
  const parameters = algorithm.parameters === undefined ? undefined : sanitizeUnlimitedText(algorithm.parameters);
  const disclaimer = (fixture ? FIXTURE_DISCLAIMER_PREFIX : '') + DRAFT_SR_DISCLAIMER;

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
                // Tracking UID: stable per (SR, finding position), so a re-send carries the same UIDs.
                trackingIdentifier: new TrackingIdentifier({
                  identifier: `AI draft finding ${i + 1}`,
                  uid: deriveUid('tracking', sopInstanceUid, String(i)),
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
  const completionDescription =
    missing > 0
      ? `AI findings for ${instances.size - missing} of ${instances.size} input images`
      : 'AI output incomplete';

  // Evidence grouped by series (PS3.3 Table C.17-3 SR Document General Module, Hierarchical SOP Instance
  // Reference Macro Table C.17-3a), in first-seen order.
  const bySeries = new Map<string, SourceInstance[]>();
  for (const inst of instances.values()) {
    const list = bySeries.get(inst.seriesInstanceUid) ?? [];
    list.push(inst);
    bySeries.set(inst.seriesInstanceUid, list);
  }

  const t = dicomDateTime(now);
  const ds: NaturalDataset = {
    // SOP Common (C.12.1)
    SpecificCharacterSet: 'ISO_IR 192',
    SOPClassUID: SR_PROFILE_SOP_CLASS[profile],
    SOPInstanceUID: sopInstanceUid,
    InstanceCreationDate: t.date,
    InstanceCreationTime: t.time,
    TimezoneOffsetFromUTC: t.offset,
  };
  for (const kw of TYPE2_COPIED) ds[kw] = present(first[kw]) ? first[kw] : '';
  for (const kw of TYPE3_COPIED) if (present(first[kw])) ds[kw] = first[kw];
  Object.assign(ds, {
    StudyInstanceUID: studyInstanceUid,
    // SR Document Series (C.17.1)
    Modality: 'SR',
    SeriesInstanceUID: seriesInstanceUid,
    SeriesNumber: DRAFT_SR_SERIES_NUMBER,
    SeriesDescription: fixture ? FIXTURE_SR_SERIES_DESCRIPTION : DRAFT_SR_SERIES_DESCRIPTION,
    // Type 2: dciodvfy reports an error when absent (js-stack.md §3).
    ReferencedPerformedProcedureStepSequence: [],
    // General Equipment (C.7.5.1): the device that made the content is the model.
    Manufacturer: manufacturer,
    ManufacturerModelName: name,
    SoftwareVersions: version,
    DeviceSerialNumber: serial,
    // IHE AIR: the algorithm as Contributing Equipment with its Device UID (PS3.3 §C.12.1, Table C.12-1).
    ContributingEquipmentSequence: [
      {
        // AIR Rev 1.1 §6.5.3.1 prescribes its own Purpose of Reference; the report profile keeps the
        // standard CID 7005 code (109102, DCM, "Processing Equipment").
        PurposeOfReferenceCodeSequence: [
          codeToItem(profile === SrProfile.Air ? Codes.ProcessingAlgorithm : Codes.ProcessingEquipment),
        ],
        Manufacturer: manufacturer,
        ManufacturerModelName: name,
        SoftwareVersions: version,
        DeviceSerialNumber: serial,
        DeviceUID: deviceUid,
      },
    ],
    // SR Document General (C.17.2)
    InstanceNumber: 1,
    PreliminaryFlag: 'PRELIMINARY',
    CompletionFlag: complete ? 'COMPLETE' : 'PARTIAL',
    ...(complete ? {} : { CompletionFlagDescription: completionDescription }),
    // UNVERIFIED, and therefore no Verifying Observer Sequence (Type 1C).
    VerificationFlag: 'UNVERIFIED',
    ContentDate: t.date,
    ContentTime: t.time,
    ...(predecessors.length > 0 ? { PredecessorDocumentsSequence: hierarchicalReferences(predecessors) } : {}),
    CurrentRequestedProcedureEvidenceSequence: [
      {
        StudyInstanceUID: studyInstanceUid,
        ReferencedSeriesSequence: [...bySeries.entries()].map(([series, list]) => ({
          SeriesInstanceUID: series,
          ReferencedSOPSequence: list.map((inst) => ({
            ReferencedSOPClassUID: inst.sopClassUid,
            ReferencedSOPInstanceUID: inst.sopInstanceUid,
          })),
        })),
      },
    ],
    PerformedProcedureCodeSequence: [],
    // SR Document Content (C.17.3): the root container, with Content Template Sequence (DCMR 2000 / 1500).
    ...root.toDataset(),
  });

  return {
    dataset: ds,
    part10: writePart10(ds),
    sopInstanceUid,
    seriesInstanceUid,
    studyInstanceUid,
    profile,
    findings: imageFindings.map((f) => ({
      sopClassUid: f.sopClassUid,
      sopInstanceUid: f.sopInstanceUid,
      ...(f.frameNumbers?.[0] === undefined ? {} : { frameNumber: f.frameNumbers[0] }),
      text: f.text,
    })),
    disclaimer,
    algorithm: { name, version, manufacturer, deviceUid, parameters, fixture },
    content: root,
  };
}

function checkPredecessors(list: unknown): PredecessorDocument[] {
  if (list === undefined) return [];
  if (!Array.isArray(list)) throw new SrValidationError('buildDraftSr: predecessor must be an array');
  return list.map((p: unknown, i) => {
    if (p === null || typeof p !== 'object')
      throw new SrValidationError(`buildDraftSr: predecessor[${i}] must be an object`);
    const r = p as Record<string, unknown>;
    for (const k of ['sopClassUid', 'sopInstanceUid', 'seriesInstanceUid', 'studyInstanceUid'] as const) {
      if (!isValidUid(r[k])) throw new SrValidationError(`buildDraftSr: predecessor[${i}].${k} must be a valid UID`);
    }
    return r as unknown as PredecessorDocument;
  });
}

/** Hierarchical SOP Instance Reference Macro (PS3.3 Table C.17-3a): study → series → SOP, first-seen order. */
function hierarchicalReferences(refs: readonly PredecessorDocument[]): NaturalDataset[] {
  const studies = new Map<string, Map<string, PredecessorDocument[]>>();
  for (const r of refs) {
    const series = studies.get(r.studyInstanceUid) ?? new Map<string, PredecessorDocument[]>();
    series.set(r.seriesInstanceUid, [...(series.get(r.seriesInstanceUid) ?? []), r]);
    studies.set(r.studyInstanceUid, series);
  }
  return [...studies.entries()].map(([study, series]) => ({
    StudyInstanceUID: study,
    ReferencedSeriesSequence: [...series.entries()].map(([seriesUid, list]) => ({
      SeriesInstanceUID: seriesUid,
      ReferencedSOPSequence: list.map((r) => ({
        ReferencedSOPClassUID: r.sopClassUid,
        ReferencedSOPInstanceUID: r.sopInstanceUid,
      })),
    })),
  }));
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

/** Serialise a naturalized dataset as Part 10 (PS3.10 §7.1), Explicit VR Little Endian, with our File Meta. */
export function writePart10(dataset: NaturalDataset): Uint8Array {
  const sopClassUid = dataset.SOPClassUID;
  const sopInstanceUid = dataset.SOPInstanceUID;
  if (!isValidUid(sopClassUid) || !isValidUid(sopInstanceUid)) {
    throw new SrValidationError('writePart10: dataset lacks a valid SOPClassUID / SOPInstanceUID');
  }
  const { DicomMetaDictionary, DicomDict } = dcmjs.data;
  const meta = {
    FileMetaInformationVersion: new Uint8Array([0, 1]).buffer,
    MediaStorageSOPClassUID: sopClassUid,
    MediaStorageSOPInstanceUID: sopInstanceUid,
    TransferSyntaxUID: EXPLICIT_VR_LITTLE_ENDIAN,
    ImplementationClassUID: RADSCRIBE_IMPLEMENTATION_CLASS_UID,
    ImplementationVersionName: RADSCRIBE_IMPLEMENTATION_VERSION_NAME,
  };
  const denaturalize = DicomMetaDictionary.denaturalizeDataset as (d: unknown) => Record<string, unknown>;
  const dict = new DicomDict(denaturalize(meta));
  dict.dict = denaturalize(dataset);
  const buf = dict.write() as ArrayBuffer;
  return new Uint8Array(buf);
}
