import dcmjs from 'dcmjs';
import { SrValidationError } from '../../errors.js';
import { isValidUid, type NaturalDataset } from '../dataset.js';
import { TransferSyntax } from '../uids.js';
import type { Code } from './coding.js';
import { type ContainerContentItem, codeToItem } from './content-items.js';
import { type CopiedSourceAttributes, copySourceAttributes } from './source-attributes.js';

/**
 * The generic SR document writer, as highdicom's `sr/sop.py` is to its templates: it wraps a content
 * tree (templates.ts) in the modules of an SR IOD (PS3.3 §A.35) and serialises it as Part 10. The
 * patient and study modules are copied from the evidence; everything else (UIDs, series, flags,
 * equipment) is the caller's decision: no RadScribe policy lives here (that is draft-policy.ts).
 * Pure: works on datasets passed in and returns bytes; no I/O (STYLE §2.1).
 */

/** RadScribe's Implementation Class UID (PS3.7 §D.3.3.2), a UUID-derived 2.25 root (PS3.5 §B.2). */
export const RADSCRIBE_IMPLEMENTATION_CLASS_UID = '2.25.88938780574547241793150963607061498973';
/** Implementation Version Name (0002,0013), SH ≤ 16 characters. */
export const RADSCRIBE_IMPLEMENTATION_VERSION_NAME = 'RADSCRIBE_0_1';

/** Preliminary Flag (0040,A496), PS3.3 §C.17.2. */
export const PreliminaryFlag = { Preliminary: 'PRELIMINARY', Final: 'FINAL' } as const;
export type PreliminaryFlag = (typeof PreliminaryFlag)[keyof typeof PreliminaryFlag];

/** Completion Flag (0040,A491), PS3.3 §C.17.2.1. */
export const CompletionFlag = { Partial: 'PARTIAL', Complete: 'COMPLETE' } as const;
export type CompletionFlag = (typeof CompletionFlag)[keyof typeof CompletionFlag];

/**
 * Verification Flag (0040,A493), PS3.3 §C.17.2. Only UNVERIFIED is offered: VERIFIED requires the
 * Verifying Observer Sequence (Type 1C), which this writer does not produce.
 */
export const VerificationFlag = { Unverified: 'UNVERIFIED' } as const;
export type VerificationFlag = (typeof VerificationFlag)[keyof typeof VerificationFlag];

/**
 * A reference to another SOP instance, with its place in the study/series hierarchy (Hierarchical SOP
 * Instance Reference Macro, PS3.3 Table C.17-3a). As a predecessor (PS3.3 §C.17.2 Predecessor Documents
 * Sequence (0040,A360), Type 1C: "required if this SR Document replaces or amends one or more other SR
 * Documents"), e.g. the draft of an earlier model version for the same inputs.
 */
export interface PredecessorDocument {
  readonly sopClassUid: string;
  readonly sopInstanceUid: string;
  readonly seriesInstanceUid: string;
  readonly studyInstanceUid: string;
}

/** One evidence instance, as read from its header. */
export interface EvidenceInstance {
  readonly sopClassUid: string;
  readonly sopInstanceUid: string;
  readonly seriesInstanceUid: string;
  /** Number of Frames (0028,0008) when the header carries a positive integer. */
  readonly numberOfFrames: number | undefined;
}

/**
 * The evidence of an SR document: the headers of its source instances, all in one study (the SR goes
 * into the same study, PS3.3 §C.17.2: evidence of the current requested procedure).
 */
export interface Evidence {
  /** Header the patient and study modules are copied from (the first source). */
  readonly first: NaturalDataset;
  readonly studyInstanceUid: string;
  /** De-duplicated instances by SOP Instance UID, in first-seen order. */
  readonly instances: ReadonlyMap<string, EvidenceInstance>;
}

function sourceUid(op: string, ds: NaturalDataset, i: number, keyword: string): string {
  const v = ds[keyword];
  if (!isValidUid(v)) throw new SrValidationError(`${op}: sources[${i}].${keyword} is missing or not a valid UID`);
  return v;
}

/**
 * Validate the source headers and collect the evidence: one study; repeated headers of the same
 * instance are merged, a repeat with another SOP class or series is refused. `op` names the operation
 * in error messages.
 */
export function collectEvidence(op: string, sources: unknown): Evidence {
  if (!Array.isArray(sources) || sources.length === 0)
    throw new SrValidationError(`${op}: sources must be a non-empty array`);
  const first = sources[0] as NaturalDataset;
  if (first === null || typeof first !== 'object') throw new SrValidationError(`${op}: sources[0] must be a dataset`);
  const studyInstanceUid = sourceUid(op, first, 0, 'StudyInstanceUID');
  const instances = new Map<string, EvidenceInstance>();
  sources.forEach((ds: NaturalDataset, i) => {
    if (ds === null || typeof ds !== 'object') throw new SrValidationError(`${op}: sources[${i}] must be a dataset`);
    const study = sourceUid(op, ds, i, 'StudyInstanceUID');
    if (study !== studyInstanceUid) {
      throw new SrValidationError(
        `${op}: sources[${i}].StudyInstanceUID differs from sources[0]: all sources must share one study`,
      );
    }
    const inst: EvidenceInstance = {
      sopClassUid: sourceUid(op, ds, i, 'SOPClassUID'),
      sopInstanceUid: sourceUid(op, ds, i, 'SOPInstanceUID'),
      seriesInstanceUid: sourceUid(op, ds, i, 'SeriesInstanceUID'),
      numberOfFrames:
        Number.isInteger(Number(ds.NumberOfFrames)) && Number(ds.NumberOfFrames) > 0
          ? Number(ds.NumberOfFrames)
          : undefined,
    };
    const seen = instances.get(inst.sopInstanceUid);
    if (seen && (seen.sopClassUid !== inst.sopClassUid || seen.seriesInstanceUid !== inst.seriesInstanceUid)) {
      throw new SrValidationError(`${op}: sources[${i}] repeats SOPInstanceUID with a different SOP class or series`);
    }
    if (!seen) instances.set(inst.sopInstanceUid, inst);
  });
  return { first, studyInstanceUid, instances };
}

/** Validate a list of predecessor references (`what` names the argument in error messages). */
export function checkPredecessors(op: string, what: string, list: unknown): PredecessorDocument[] {
  if (list === undefined) return [];
  if (!Array.isArray(list)) throw new SrValidationError(`${op}: ${what} must be an array`);
  return list.map((p: unknown, i) => {
    if (p === null || typeof p !== 'object') throw new SrValidationError(`${op}: ${what}[${i}] must be an object`);
    const r = p as Record<string, unknown>;
    for (const k of ['sopClassUid', 'sopInstanceUid', 'seriesInstanceUid', 'studyInstanceUid'] as const) {
      if (!isValidUid(r[k])) throw new SrValidationError(`${op}: ${what}[${i}].${k} must be a valid UID`);
    }
    return r as unknown as PredecessorDocument;
  });
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
 * Patient (C.7.1.1), General Study (C.7.2.1), Patient Study (C.7.2.2) attributes copied from the source
 * (checked and normalised on the way: source-attributes.ts COPIED_SOURCE_ATTRIBUTES, the same list).
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

/** Hierarchical SOP Instance Reference Macro (PS3.3 Table C.17-3a): study → series → SOP, first-seen order. */
export function hierarchicalReferences(refs: readonly PredecessorDocument[]): NaturalDataset[] {
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
 * The equipment that made the content: General Equipment (PS3.3 §C.7.5.1) and one Contributing
 * Equipment item (PS3.3 §C.12.1, Table C.12-1) carrying its Device UID.
 */
export interface SrEquipment {
  readonly manufacturer: string;
  readonly modelName: string;
  readonly softwareVersions: string;
  readonly serialNumber: string;
  readonly deviceUid: string;
  /** Purpose of Reference of the Contributing Equipment item (CID 7005). */
  readonly purposeOfReference: Code;
}

export interface SrDocumentParams {
  /** One of the SR Storage SOP Classes (uids.ts `SopClass`). */
  readonly sopClassUid: string;
  readonly sopInstanceUid: string;
  readonly seriesInstanceUid: string;
  readonly seriesNumber: number;
  readonly seriesDescription: string;
  readonly instanceNumber: number;
  readonly evidence: Evidence;
  readonly equipment: SrEquipment;
  readonly preliminaryFlag: PreliminaryFlag;
  readonly completionFlag: CompletionFlag;
  /** Completion Flag Description (0040,A492), written only for a PARTIAL document. */
  readonly completionFlagDescription?: string;
  readonly verificationFlag: VerificationFlag;
  readonly predecessors: readonly PredecessorDocument[];
  /** Root CONTAINER of the content tree, with its Content Template Sequence (templates.ts). */
  readonly content: ContainerContentItem;
  /** Content / Instance Creation date-time. */
  readonly now: Date;
  /** The source's patient / study attributes as checked by copySourceAttributes (computed when absent). */
  readonly sourceAttributes?: CopiedSourceAttributes;
}

/**
 * The data set of an SR document (PS3.3 §A.35.3 / §A.35.13 module table): SOP Common, Patient,
 * General Study, Patient Study, SR Document Series, General Equipment, SR Document General and
 * SR Document Content. Character set is ISO_IR 192 (UTF-8), since model text is arbitrary Unicode.
 */
export function buildSrDataset(p: SrDocumentParams): NaturalDataset {
  const { evidence, equipment } = p;
  const first = evidence.first;
  const complete = p.completionFlag === CompletionFlag.Complete;

  // Evidence grouped by series (PS3.3 Table C.17-3 SR Document General Module, Hierarchical SOP Instance
  // Reference Macro Table C.17-3a), in first-seen order.
  const bySeries = new Map<string, EvidenceInstance[]>();
  for (const inst of evidence.instances.values()) {
    const list = bySeries.get(inst.seriesInstanceUid) ?? [];
    list.push(inst);
    bySeries.set(inst.seriesInstanceUid, list);
  }

  const t = dicomDateTime(p.now);
  const ds: NaturalDataset = {
    // SOP Common (C.12.1)
    SpecificCharacterSet: 'ISO_IR 192',
    SOPClassUID: p.sopClassUid,
    SOPInstanceUID: p.sopInstanceUid,
    InstanceCreationDate: t.date,
    InstanceCreationTime: t.time,
    TimezoneOffsetFromUTC: t.offset,
  };
  // Patient / study attributes in a form the VRs allow (source-attributes.ts): never verbatim.
  Object.assign(ds, (p.sourceAttributes ?? copySourceAttributes(first)).attributes);
  Object.assign(ds, {
    StudyInstanceUID: evidence.studyInstanceUid,
    // SR Document Series (C.17.1)
    Modality: 'SR',
    SeriesInstanceUID: p.seriesInstanceUid,
    SeriesNumber: p.seriesNumber,
    SeriesDescription: p.seriesDescription,
    // Type 2: dciodvfy reports an error when absent (js-stack.md §3).
    ReferencedPerformedProcedureStepSequence: [],
    // General Equipment (C.7.5.1): the device that made the content.
    Manufacturer: equipment.manufacturer,
    ManufacturerModelName: equipment.modelName,
    SoftwareVersions: equipment.softwareVersions,
    DeviceSerialNumber: equipment.serialNumber,
    // The same device as Contributing Equipment with its Device UID (PS3.3 §C.12.1, Table C.12-1; IHE AIR).
    ContributingEquipmentSequence: [
      {
        PurposeOfReferenceCodeSequence: [codeToItem(equipment.purposeOfReference)],
        Manufacturer: equipment.manufacturer,
        ManufacturerModelName: equipment.modelName,
        SoftwareVersions: equipment.softwareVersions,
        DeviceSerialNumber: equipment.serialNumber,
        DeviceUID: equipment.deviceUid,
      },
    ],
    // SR Document General (C.17.2)
    InstanceNumber: p.instanceNumber,
    PreliminaryFlag: p.preliminaryFlag,
    CompletionFlag: p.completionFlag,
    ...(complete || p.completionFlagDescription === undefined
      ? {}
      : { CompletionFlagDescription: p.completionFlagDescription }),
    // UNVERIFIED, and therefore no Verifying Observer Sequence (Type 1C).
    VerificationFlag: p.verificationFlag,
    ContentDate: t.date,
    ContentTime: t.time,
    ...(p.predecessors.length > 0 ? { PredecessorDocumentsSequence: hierarchicalReferences(p.predecessors) } : {}),
    CurrentRequestedProcedureEvidenceSequence: [
      {
        StudyInstanceUID: evidence.studyInstanceUid,
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
    // SR Document Content (C.17.3): the root container, with its Content Template Sequence.
    ...p.content.toDataset(),
  });
  return ds;
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
    TransferSyntaxUID: TransferSyntax.ExplicitVrLittleEndian,
    ImplementationClassUID: RADSCRIBE_IMPLEMENTATION_CLASS_UID,
    ImplementationVersionName: RADSCRIBE_IMPLEMENTATION_VERSION_NAME,
  };
  const denaturalize = DicomMetaDictionary.denaturalizeDataset as (d: unknown) => Record<string, unknown>;
  const dict = new DicomDict(denaturalize(meta));
  dict.dict = denaturalize(dataset);
  const buf = dict.write() as ArrayBuffer;
  return new Uint8Array(buf);
}
