import { SrValidationError } from '../../errors.js';
import type { NaturalDataset } from '../dataset.js';
import { Codes } from '../sr/coding.js';
import { codeToItem } from '../sr/content-items.js';
import { DRAFT_SR_SERIES_NUMBER, DRAFT_VERIFICATION_FLAG, draftPdfSopInstanceUid } from '../sr/draft-policy.js';
import type { DraftSr } from '../sr/draft-sr.js';
import { dicomDateTime, TYPE2_COPIED, TYPE3_COPIED, writePart10 } from '../sr/sr-document.js';
import { SopClass } from '../uids.js';
import { type PdfBlock, renderDraftPdf } from './draft-pdf.js';
import type { PdfFont } from './fonts.js';

/**
 * The PDF companion of a draft SR: an Encapsulated PDF (PS3.3 §A.45.1) in the draft's series, for
 * viewers that do not render SR text (OHIF, Orthanc Stone; reference/dicom-sr-and-audit.md §4). It
 * shows the same text, flags, disclaimer and algorithm identification as the SR.
 */

/** Document Title (0042,0010) and PDF title. */
export const DRAFT_PDF_TITLE = 'UNVERIFIED AI DRAFT – NOT FOR DIAGNOSTIC USE';
/** Instance Number of the companion (the SR is 1). */
export const DRAFT_PDF_INSTANCE_NUMBER = 2;

export interface EncapsulatedPdfParams {
  /** The draft SR this PDF accompanies (buildDraftSr's result); everything shown comes from it. */
  readonly sr: DraftSr;
  /** Unicode fonts in fallback order (loadPdfFonts()). */
  readonly fonts: readonly PdfFont[];
  /** Instance creation date-time; default now. */
  readonly now?: Date;
}

export interface EncapsulatedPdf {
  readonly dataset: NaturalDataset;
  readonly part10: Uint8Array;
  readonly sopInstanceUid: string;
  readonly seriesInstanceUid: string;
  /** The PDF document itself. */
  readonly pdf: Uint8Array;
}

function s(v: unknown): string {
  if (Array.isArray(v)) return s(v[0]);
  if (v !== null && typeof v === 'object' && 'Alphabetic' in v)
    return String((v as { Alphabetic: unknown }).Alphabetic ?? '');
  return v === undefined || v === null ? '' : String(v);
}

/** What the PDF says: the SR's header and content, in reading order. */
export function draftPdfBlocks(sr: DraftSr): PdfBlock[] {
  const ds = sr.dataset;
  const a = sr.algorithm;
  const blocks: PdfBlock[] = [
    { kind: 'warning', text: sr.disclaimer },
    { kind: 'field', label: 'Patient', value: `${s(ds.PatientName)} (ID ${s(ds.PatientID)})` },
    {
      kind: 'field',
      label: 'Study',
      value: `${s(ds.StudyDate)} ${s(ds.StudyDescription)} – accession ${s(ds.AccessionNumber)}`,
    },
    { kind: 'field', label: 'Study Instance UID', value: sr.studyInstanceUid },
    {
      kind: 'field',
      label: 'Status',
      value: `${s(ds.PreliminaryFlag)} · ${s(ds.VerificationFlag)} (no verifying observer) · ${s(ds.CompletionFlag)}${
        ds.CompletionFlagDescription ? ` (${s(ds.CompletionFlagDescription)})` : ''
      }`,
    },
    {
      kind: 'field',
      label: 'Content date/time',
      value: `${s(ds.ContentDate)} ${s(ds.ContentTime)} UTC${s(ds.TimezoneOffsetFromUTC)}`,
    },
    { kind: 'heading', text: 'Algorithm identification' },
    { kind: 'field', label: 'Algorithm', value: `${a.name} ${a.version}` },
    { kind: 'field', label: 'Manufacturer', value: a.manufacturer },
    { kind: 'field', label: 'Device UID', value: a.deviceUid },
    ...(a.parameters === undefined
      ? []
      : [{ kind: 'field' as const, label: 'Parameters (prompt)', value: a.parameters }]),
    { kind: 'heading', text: 'Findings (AI draft)' },
  ];
  sr.findings.forEach((f, i) => {
    blocks.push({
      kind: 'field',
      label: `Finding ${i + 1}`,
      value: `image ${f.sopInstanceUid}${f.frameNumber === undefined ? '' : ` frame ${f.frameNumber}`}`,
    });
    blocks.push({ kind: 'paragraph', text: f.text });
  });
  blocks.push({ kind: 'warning', text: sr.disclaimer });
  blocks.push({ kind: 'field', label: 'Structured report', value: `${sr.sopInstanceUid} (${sr.profile} profile)` });
  return blocks;
}

/**
 * Build the Encapsulated PDF companion of `sr`. Its SOP Instance UID is derived from the SR's
 * (draftPdfSopInstanceUid), so it is as idempotent as the SR; it sits in the SR's series.
 */
export async function buildEncapsulatedPdf(params: EncapsulatedPdfParams): Promise<EncapsulatedPdf> {
  const sr = params?.sr;
  if (sr === undefined || sr === null || typeof sr !== 'object' || sr.dataset === undefined) {
    throw new SrValidationError('buildEncapsulatedPdf: sr must be the result of buildDraftSr');
  }
  const now = params.now ?? new Date();
  if (!(now instanceof Date) || Number.isNaN(now.getTime()))
    throw new SrValidationError('buildEncapsulatedPdf: now must be a valid Date');
  const pdf = await renderDraftPdf({ title: DRAFT_PDF_TITLE, blocks: draftPdfBlocks(sr), fonts: params.fonts, now });
  const src = sr.dataset;
  const sopInstanceUid = draftPdfSopInstanceUid(sr.sopInstanceUid);
  const t = dicomDateTime(now);
  // OB values have even length (PS3.5 §7.1.1); Encapsulated Document Length keeps the true size.
  const padded = new Uint8Array(pdf.length + (pdf.length % 2));
  padded.set(pdf);
  const ds: NaturalDataset = {
    // SOP Common (C.12.1)
    SpecificCharacterSet: 'ISO_IR 192',
    SOPClassUID: SopClass.EncapsulatedPdfStorage,
    SOPInstanceUID: sopInstanceUid,
    InstanceCreationDate: t.date,
    InstanceCreationTime: t.time,
    TimezoneOffsetFromUTC: t.offset,
  };
  // Patient (C.7.1.1), General Study (C.7.2.1), Patient Study (C.7.2.2): as the SR has them.
  for (const kw of TYPE2_COPIED) ds[kw] = src[kw] ?? '';
  for (const kw of TYPE3_COPIED) if (src[kw] !== undefined) ds[kw] = src[kw];
  Object.assign(ds, {
    StudyInstanceUID: sr.studyInstanceUid,
    // Encapsulated Document Series (C.24.1): the draft's series, so the PDF shows next to the SR.
    Modality: 'DOC',
    SeriesInstanceUID: sr.seriesInstanceUid,
    SeriesNumber: DRAFT_SR_SERIES_NUMBER,
    SeriesDescription: src.SeriesDescription,
    // General Equipment (C.7.5.1) as in the SR, and the algorithm as Contributing Equipment.
    Manufacturer: src.Manufacturer,
    ManufacturerModelName: src.ManufacturerModelName,
    SoftwareVersions: src.SoftwareVersions,
    DeviceSerialNumber: src.DeviceSerialNumber,
    ContributingEquipmentSequence: src.ContributingEquipmentSequence,
    // SC Equipment (C.8.6.1): WSD = workstation-made document.
    ConversionType: 'WSD',
    // Encapsulated Document (C.24.2)
    InstanceNumber: DRAFT_PDF_INSTANCE_NUMBER,
    ContentDate: src.ContentDate,
    ContentTime: src.ContentTime,
    AcquisitionDateTime: `${t.date}${t.time}${t.offset}`,
    // The page shows patient name and ID.
    BurnedInAnnotation: 'YES',
    DocumentTitle: DRAFT_PDF_TITLE,
    ConceptNameCodeSequence: [codeToItem(Codes.DiagnosticImagingReport)],
    // Derived from the SR (and through it from the images it lists as evidence).
    SourceInstanceSequence: [{ ReferencedSOPClassUID: src.SOPClassUID, ReferencedSOPInstanceUID: sr.sopInstanceUid }],
    VerificationFlag: DRAFT_VERIFICATION_FLAG,
    MIMETypeOfEncapsulatedDocument: 'application/pdf',
    EncapsulatedDocumentLength: pdf.length,
    EncapsulatedDocument: [padded.buffer],
  });
  return { dataset: ds, part10: writePart10(ds), sopInstanceUid, seriesInstanceUid: sr.seriesInstanceUid, pdf };
}
