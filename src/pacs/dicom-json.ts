/**
 * DICOM JSON Model (PS3.18 Annex F): typed readers and the few writers the STOW-RS response needs.
 * Keys are 8-hex-digit tags; each attribute is `{ vr, Value?: [...] }` (PS3.18 §F.2.2).
 */

export interface DicomJsonAttribute {
  readonly vr: string;
  readonly Value?: readonly unknown[];
  readonly BulkDataURI?: string;
  readonly InlineBinary?: string;
}
export type DicomJsonDataset = Record<string, DicomJsonAttribute>;

/** Tags used by QIDO/WADO/STOW code (PS3.6 Table 6-1). Closed set. */
export const Tag = {
  SOPClassUID: '00080016',
  SOPInstanceUID: '00080018',
  StudyDate: '00080020',
  ModalitiesInStudy: '00080061',
  Modality: '00080060',
  RetrieveURL: '00081190',
  FailedSOPSequence: '00081198',
  ReferencedSOPSequence: '00081199',
  ReferencedSOPClassUID: '00081150',
  ReferencedSOPInstanceUID: '00081155',
  FailureReason: '00081197',
  WarningReason: '00081196',
  StudyInstanceUID: '0020000D',
  SeriesInstanceUID: '0020000E',
  NumberOfStudyRelatedInstances: '00201208',
  NumberOfSeriesRelatedInstances: '00201209',
} as const;
export type Tag = (typeof Tag)[keyof typeof Tag];

function attr(ds: DicomJsonDataset, tag: string): DicomJsonAttribute | undefined {
  // Tags are upper-case hex per PS3.18 §F.2.1.1; tolerate lower-case senders.
  return ds[tag] ?? ds[tag.toLowerCase()];
}

/** First value of a string-valued attribute (UI, DA, CS, UR, LO…), or undefined. */
export function getString(ds: DicomJsonDataset, tag: string): string | undefined {
  const v = attr(ds, tag)?.Value?.[0];
  return typeof v === 'string' && v.length > 0 ? v : undefined;
}

/** All string values of a multi-valued attribute (e.g. ModalitiesInStudy). */
export function getStrings(ds: DicomJsonDataset, tag: string): string[] {
  return (attr(ds, tag)?.Value ?? []).filter((v): v is string => typeof v === 'string');
}

/** First numeric value (US, UL, IS, DS in JSON are numbers; IS/DS may arrive as strings). */
export function getNumber(ds: DicomJsonDataset, tag: string): number | undefined {
  const v = attr(ds, tag)?.Value?.[0];
  if (typeof v === 'number') return v;
  if (typeof v === 'string' && v.trim() !== '' && Number.isFinite(Number(v))) return Number(v);
  return undefined;
}

/** Items of a sequence attribute (SQ). */
export function getSequence(ds: DicomJsonDataset, tag: string): DicomJsonDataset[] {
  return (attr(ds, tag)?.Value ?? []).filter(
    (v): v is DicomJsonDataset => typeof v === 'object' && v !== null && !Array.isArray(v),
  );
}

export function isDicomJsonDataset(v: unknown): v is DicomJsonDataset {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

export const uiAttr = (uid: string): DicomJsonAttribute => ({ vr: 'UI', Value: [uid] });
export const urAttr = (url: string): DicomJsonAttribute => ({ vr: 'UR', Value: [url] });
export const usAttr = (n: number): DicomJsonAttribute => ({ vr: 'US', Value: [n] });
export const sqAttr = (items: readonly DicomJsonDataset[]): DicomJsonAttribute =>
  // PS3.18 §F.2.5: an empty sequence has no Value.
  items.length > 0 ? { vr: 'SQ', Value: items } : { vr: 'SQ' };
