import { SrValidationError } from '../../errors.js';
import { isShortOrLongString } from './vr.js';

/**
 * Coded concepts for SR content (PS3.3 §8.8 Code Sequence Macro, Table 8.8-1).
 * Every code is a full (value, scheme, meaning) triple (STYLE rule 4); the scheme version is optional
 * (Coding Scheme Version (0008,0103) is Type 1C, needed only where the designator is ambiguous).
 */
export interface Code {
  /** Code Value (0008,0100), SH: at most 16 characters. */
  readonly value: string;
  /** Coding Scheme Designator (0008,0102), SH. */
  readonly scheme: string;
  /** Code Meaning (0008,0104), LO: at most 64 characters. */
  readonly meaning: string;
  /** Coding Scheme Version (0008,0103), SH. */
  readonly schemeVersion?: string;
}

/** Coding scheme designators we emit (PS3.16 §8 Table 8-1). SCT replaces the deprecated SRT. */
export const CodingScheme = {
  /** DICOM Controlled Terminology, PS3.16 Annex D. */
  DCM: 'DCM',
  /** LOINC. */
  LN: 'LN',
  /** SNOMED CT (the retired designator SRT draws a dciodvfy warning). */
  SCT: 'SCT',
  /** IETF BCP 47 language tags, used by CID 5000. */
  RFC5646: 'RFC5646',
  /** Unified Code for Units of Measure. */
  UCUM: 'UCUM',
  /** UMLS, used by TID 1500 for (C0034375, UMLS, "Qualitative Evaluations"). */
  UMLS: 'UMLS',
  /**
   * IHE's private designator for codes a profile defines before DICOM assigns one (the "99" prefix
   * marks a private scheme, PS3.16 §8.1). IHE AIR Rev 1.1 §6.5.3.1 uses it for "Processing Algorithm".
   */
  IHE99: '99IHE',
} as const;
export type CodingScheme = (typeof CodingScheme)[keyof typeof CodingScheme];

/** SH and LO limits of PS3.5 Table 6.2-1. */
const SH_MAX = 16;
const LO_MAX = 64;
/** Values over 16 characters are written as Long Code Value (0008,0119); we cap them at 64. */
const LONG_CODE_VALUE_MAX = 64;
function checkShortString(what: string, value: unknown, max: number): string {
  if (typeof value !== 'string' || value.trim().length === 0) {
    throw new SrValidationError(`code ${what} must be a non-empty string`);
  }
  if (value.length > max) throw new SrValidationError(`code ${what} exceeds ${max} characters`);
  if (!isShortOrLongString(value, max)) {
    throw new SrValidationError(`code ${what} contains a backslash or control character`);
  }
  return value;
}

/**
 * Make a validated Code. Throws SrValidationError naming the bad field.
 * A value longer than 16 characters is written as Long Code Value (0008,0119) by codeToItem.
 */
export function code(value: string, scheme: string, meaning: string, schemeVersion?: string): Code {
  const c: Code = {
    value: checkShortString('value', value, LONG_CODE_VALUE_MAX),
    scheme: checkShortString('scheme', scheme, SH_MAX),
    meaning: checkShortString('meaning', meaning, LO_MAX),
    ...(schemeVersion === undefined ? {} : { schemeVersion: checkShortString('schemeVersion', schemeVersion, SH_MAX) }),
  };
  return Object.freeze(c);
}

/** Throws unless `c` is a structurally complete code; used by content-item constructors. */
export function assertCode(what: string, c: unknown): Code {
  if (c === null || typeof c !== 'object')
    throw new SrValidationError(`${what} must be a Code (value, scheme, meaning)`);
  const { value, scheme, meaning, schemeVersion } = c as Record<string, unknown>;
  try {
    return code(value as string, scheme as string, meaning as string, schemeVersion as string | undefined);
  } catch (err) {
    throw new SrValidationError(`${what}: ${(err as Error).message}`);
  }
}

/** Two codes denote the same concept when value and scheme match; the meaning is display text (PS3.3 §8.8). */
export function codeEquals(a: Code | undefined, b: Code | undefined): boolean {
  return a !== undefined && b !== undefined && a.value === b.value && a.scheme === b.scheme;
}

/** `(value, scheme, "meaning")`, the notation of PS3.16 and dsrdump. */
export function formatCode(c: Code): string {
  return `(${c.value}, ${c.scheme}, "${c.meaning}")`;
}

/**
 * The concepts RadScribe writes. Sources: PS3.16 Annex D (DCM), CID 7000/7001/7002 (LOINC report and
 * section titles), TID 1204, TID 1002/1004, TID 4019 and CID 7005.
 */
export const Codes = {
  /** CID 7000 Diagnostic Imaging Report Document Titles: root of TID 2000. */
  DiagnosticImagingReport: code('18748-4', CodingScheme.LN, 'Diagnostic Imaging Report'),
  /** CID 7001 Diagnostic Imaging Report Headings. */
  Findings: code('59776-5', CodingScheme.LN, 'Findings'),
  /** CID 7001 Diagnostic Imaging Report Headings. */
  Impressions: code('19005-8', CodingScheme.LN, 'Impressions'),
  /** CID 7002 Diagnostic Imaging Report Elements. */
  Finding: code('121071', CodingScheme.DCM, 'Finding'),
  /** CID 7002 Diagnostic Imaging Report Elements. */
  Impression: code('121073', CodingScheme.DCM, 'Impression'),
  /** PS3.16 Annex D; used for the "unverified AI draft" disclaimer (TID 2000 is extensible). */
  Comment: code('121106', CodingScheme.DCM, 'Comment'),
  /** TID 1204 row 1. */
  LanguageOfContentItemAndDescendants: code('121049', CodingScheme.DCM, 'Language of Content Item and Descendants'),
  /** CID 5000 Language: BCP 47 tag. */
  EnglishUS: code('en-US', CodingScheme.RFC5646, 'English (United States)'),
  /** TID 1002 row 1. */
  ObserverType: code('121005', CodingScheme.DCM, 'Observer Type'),
  /** CID 270 Observer Type. */
  Device: code('121007', CodingScheme.DCM, 'Device'),
  /** CID 270 Observer Type. */
  Person: code('121006', CodingScheme.DCM, 'Person'),
  /** TID 1004 rows 1–6. */
  DeviceObserverUid: code('121012', CodingScheme.DCM, 'Device Observer UID'),
  DeviceObserverName: code('121013', CodingScheme.DCM, 'Device Observer Name'),
  DeviceObserverManufacturer: code('121014', CodingScheme.DCM, 'Device Observer Manufacturer'),
  DeviceObserverModelName: code('121015', CodingScheme.DCM, 'Device Observer Model Name'),
  DeviceObserverSerialNumber: code('121016', CodingScheme.DCM, 'Device Observer Serial Number'),
  /** TID 4019 Algorithm Identification. */
  AlgorithmFamily: code('111000', CodingScheme.DCM, 'Algorithm Family'),
  AlgorithmName: code('111001', CodingScheme.DCM, 'Algorithm Name'),
  AlgorithmParameters: code('111002', CodingScheme.DCM, 'Algorithm Parameters'),
  AlgorithmVersion: code('111003', CodingScheme.DCM, 'Algorithm Version'),
  AlgorithmManufacturer: code('122405', CodingScheme.DCM, 'Algorithm Manufacturer'),
  /** CID 7162 Algorithm Families (as listed in PS3.16 Annex D). */
  ArtificialIntelligence: code('123110', CodingScheme.DCM, 'Artificial Intelligence'),
  /** CID 7005 Contributing Equipment Purposes of Reference. */
  ProcessingEquipment: code('109102', CodingScheme.DCM, 'Processing Equipment'),
  /**
   * IHE AIR Rev 1.1 §6.5.3.1: Purpose of Reference of the algorithm's Contributing Equipment item. A
   * placeholder code ("Newcode1") that IHE has not yet replaced by a DICOM code (docs/draft-sr.md).
   */
  ProcessingAlgorithm: code('Newcode1', CodingScheme.IHE99, 'Processing Algorithm'),
  /** CID 7021 Measurement Report Document Titles: root of TID 1500. */
  ImagingMeasurementReport: code('126000', CodingScheme.DCM, 'Imaging Measurement Report'),
  /** TID 1500 row 4 (CID 100 Quantitative Diagnostic Imaging Procedures as value). */
  ProcedureReported: code('121058', CodingScheme.DCM, 'Procedure reported'),
  /** TID 1600 Image Library. */
  ImageLibrary: code('111028', CodingScheme.DCM, 'Image Library'),
  /** TID 1600 row 2. */
  ImageLibraryGroup: code('126200', CodingScheme.DCM, 'Image Library Group'),
  /** TID 1500 row 6. */
  ImagingMeasurements: code('126010', CodingScheme.DCM, 'Imaging Measurements'),
  /** TID 1501 row 1. */
  MeasurementGroup: code('125007', CodingScheme.DCM, 'Measurement Group'),
  /** TID 4108 Tracking Identifier rows 1–2. */
  TrackingIdentifier: code('112039', CodingScheme.DCM, 'Tracking Identifier'),
  TrackingUniqueIdentifier: code('112040', CodingScheme.DCM, 'Tracking Unique Identifier'),
  /** TID 1500 row 12: root-level qualitative evaluations (we put the disclaimer there). */
  QualitativeEvaluations: code('C0034375', CodingScheme.UMLS, 'Qualitative Evaluations'),
  /** SNOMED CT "Clinical finding": the Finding (121071) value of a free-text AI observation. */
  ClinicalFinding: code('404684003', CodingScheme.SCT, 'Clinical finding'),
} as const;

/**
 * Imaging procedure per modality, the value of Procedure Reported (121058, DCM) in TID 1500 when the
 * source carries no Procedure Code Sequence (0008,1032). SNOMED CT procedure codes as listed in CID 100
 * "Quantitative Diagnostic Imaging Procedures"; anything else falls back to "Imaging procedure".
 * IHE AIR §6.5.3.1: Procedure Reported describes the imaging procedure analyzed, not the algorithm.
 */
export const ImagingProcedureByModality: Readonly<Record<string, Code>> = {
  CT: code('77477000', CodingScheme.SCT, 'Computerized axial tomography'),
  MR: code('113091000', CodingScheme.SCT, 'Magnetic resonance imaging'),
  PT: code('82918005', CodingScheme.SCT, 'Positron emission tomography'),
  NM: code('371572003', CodingScheme.SCT, 'Nuclear medicine imaging procedure'),
  US: code('16310003', CodingScheme.SCT, 'Ultrasonography'),
  MG: code('71651007', CodingScheme.SCT, 'Mammography'),
  CR: code('363680008', CodingScheme.SCT, 'Radiographic imaging procedure'),
  DX: code('363680008', CodingScheme.SCT, 'Radiographic imaging procedure'),
  XA: code('77343006', CodingScheme.SCT, 'Angiography'),
};
/** Fallback Procedure Reported: SNOMED CT "Imaging procedure". */
export const IMAGING_PROCEDURE: Code = code('363679005', CodingScheme.SCT, 'Imaging procedure');
