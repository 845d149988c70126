import { createHash } from 'node:crypto';

/**
 * A fingerprint of what an exported SR (or its PDF companion) *says*, computed the same way from
 * the Part 10 bytes we sent (dcmjs's tag → {vr, Value} dictionary) and from the DICOM JSON a PACS
 * returns for WADO-RS `/metadata` (PS3.18 §10.4.1.1.2, Annex F). A destination that answers a send
 * with "already stored" (0x0111 Duplicate SOP Instance, HTTP 409, a Warning) — or, like Orthanc,
 * with a plain success while it keeps its old copy — is believed only when the copy it holds has the
 * same fingerprint as ours (issue 11).
 *
 * What counts (stable across a PACS's own handling):
 * - SOP Class, Study, Series and SOP Instance UIDs: the object's identity (PS3.3 C.12.1, C.7.2.1,
 *   C.7.3.1).
 * - Completion, Verification and Preliminary Flags (PS3.3 C.17.2): whether the draft is partial, and
 *   that it is unverified, are clinically meaningful.
 * - The content tree (PS3.3 C.17.3), in document order: per item its Relationship Type, Value Type,
 *   Concept Name (code value + coding scheme), and its value: Text Value, UID, Date/Time, the
 *   Concept Code (value + scheme), numeric values, the referenced SOP Class/Instance UIDs and frame
 *   numbers of IMAGE/COMPOSITE items.
 * - For an Encapsulated PDF (PS3.3 A.45.1): Document Title, MIME type and Concept Name, and the
 *   document bytes when the metadata carries them inline (a PACS normally gives a BulkDataURI, so
 *   the PDF bytes themselves are not compared: the PDF is derived from the SR, whose own fingerprint
 *   is compared).
 *
 * What does not count, and why:
 * - Attributes a PACS adds (Instance Availability, Retrieve URL, private tags, its own timestamps):
 *   the fingerprint is a whitelist, so additions cannot change it.
 * - Patient and study demographics (Patient Name/ID, Accession Number, Referring Physician): PS3.4
 *   B.4.1.3 allows a PACS to coerce them to its own records; they are the study's, not the draft's.
 * - Content Date/Time and Instance Creation Date/Time: a re-run of the same model on the same images
 *   writes the same findings at another time; the same UID with another time is the same draft.
 * - Code Meanings (0008,0104): the code value and scheme are the concept (PS3.16 §8.1); a PACS may
 *   normalise meanings.
 * - Specific Character Set: DICOM JSON is Unicode whatever the stored encoding (PS3.18 §F.2.1), so the
 *   text is compared as text; a PACS that transcodes the character set changes nothing here.
 * - Trailing spaces and NULs of text and UID values: value padding (PS3.5 §6.2), which a PACS may
 *   strip or add.
 */

/** One compared value: where it is in the object (tag path, no values) and its normalised value. */
export interface FingerprintEntry {
  readonly path: string;
  readonly value: string;
}

export interface ContentFingerprint {
  /** sha256 (hex) over the entries. */
  readonly sha256: string;
  readonly entries: readonly FingerprintEntry[];
}

/** Tags the fingerprint reads (PS3.6 Table 6-1). Closed set. */
export const FingerprintTag = {
  SOPClassUID: '00080016',
  SOPInstanceUID: '00080018',
  StudyInstanceUID: '0020000D',
  SeriesInstanceUID: '0020000E',
  CompletionFlag: '0040A491',
  VerificationFlag: '0040A493',
  PreliminaryFlag: '0040A496',
  ContentSequence: '0040A730',
  RelationshipType: '0040A010',
  ValueType: '0040A040',
  ConceptNameCodeSequence: '0040A043',
  ConceptCodeSequence: '0040A168',
  CodeValue: '00080100',
  CodingSchemeDesignator: '00080102',
  TextValue: '0040A160',
  UID: '0040A124',
  DateTime: '0040A120',
  Date: '0040A121',
  Time: '0040A122',
  MeasuredValueSequence: '0040A300',
  NumericValue: '0040A30A',
  ReferencedSOPSequence: '00081199',
  ReferencedSOPClassUID: '00081150',
  ReferencedSOPInstanceUID: '00081155',
  ReferencedFrameNumber: '00081160',
  DocumentTitle: '00420010',
  MIMETypeOfEncapsulatedDocument: '00420012',
  EncapsulatedDocument: '00420011',
} as const;
const T = FingerprintTag;

/** Either form: DICOM JSON from a PACS ({@link DicomJsonDataset}), or dcmjs's dictionary of our own bytes. */
export type FingerprintSource = Readonly<Record<string, unknown>>;
type AnyDataset = FingerprintSource;

interface Attr {
  readonly vr?: string;
  readonly Value?: readonly unknown[];
  readonly InlineBinary?: string;
}

function attr(ds: AnyDataset, tag: string): Attr | undefined {
  const a = (ds as Record<string, unknown>)[tag] ?? (ds as Record<string, unknown>)[tag.toLowerCase()];
  return typeof a === 'object' && a !== null ? (a as Attr) : undefined;
}

/** Value padding (PS3.5 §6.2) is not content. */
const unpad = (s: string): string => s.replace(/[\0 ]+$/, '');

function values(ds: AnyDataset, tag: string): string[] {
  return (attr(ds, tag)?.Value ?? []).map((v) => {
    if (typeof v === 'number') return String(v);
    // DS/IS may be strings in one form and numbers in the other.
    if (typeof v === 'string') {
      const t = unpad(v).trim();
      return /^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$/.test(t) && /^(DS|IS|FD|FL)$/.test(attr(ds, tag)?.vr ?? '')
        ? String(Number(t))
        : unpad(v);
    }
    return JSON.stringify(v);
  });
}

function items(ds: AnyDataset, tag: string): AnyDataset[] {
  return (attr(ds, tag)?.Value ?? []).filter(
    (v): v is AnyDataset => typeof v === 'object' && v !== null && !Array.isArray(v),
  );
}

function code(ds: AnyDataset, tag: string): string | undefined {
  const c = items(ds, tag)[0];
  if (!c) return undefined;
  return `${values(c, T.CodeValue).join('\\')}^${values(c, T.CodingSchemeDesignator).join('\\')}`;
}

/** Bytes of an attribute held inline (our dcmjs dictionary: ArrayBuffer; DICOM JSON: InlineBinary). */
function inlineBytes(ds: AnyDataset, tag: string): Buffer | undefined {
  const a = attr(ds, tag);
  if (!a) return undefined;
  if (typeof a.InlineBinary === 'string') return Buffer.from(a.InlineBinary, 'base64');
  const v = a.Value?.[0];
  if (v instanceof ArrayBuffer) return Buffer.from(v);
  if (ArrayBuffer.isView(v)) return Buffer.from(v.buffer, v.byteOffset, v.byteLength);
  return undefined;
}

function contentItems(ds: AnyDataset, at: string, out: FingerprintEntry[]): void {
  items(ds, T.ContentSequence).forEach((item, i) => {
    const p = `${at}/${i + 1}`;
    const push = (what: string, value: string | undefined): void => {
      if (value !== undefined && value !== '') out.push({ path: `${p}:${what}`, value });
    };
    push('rel', values(item, T.RelationshipType).join('\\'));
    push('type', values(item, T.ValueType).join('\\'));
    push('concept', code(item, T.ConceptNameCodeSequence));
    push('text', values(item, T.TextValue).join('\\'));
    push('uid', values(item, T.UID).join('\\'));
    push('datetime', values(item, T.DateTime).join('\\'));
    push('date', values(item, T.Date).join('\\'));
    push('time', values(item, T.Time).join('\\'));
    push('code', code(item, T.ConceptCodeSequence));
    for (const m of items(item, T.MeasuredValueSequence)) push('numeric', values(m, T.NumericValue).join('\\'));
    for (const r of items(item, T.ReferencedSOPSequence)) {
      push(
        'ref',
        [
          values(r, T.ReferencedSOPClassUID).join('\\'),
          values(r, T.ReferencedSOPInstanceUID).join('\\'),
          values(r, T.ReferencedFrameNumber).join('\\'),
        ].join('|'),
      );
    }
    contentItems(item, p, out);
  });
}

/** The fingerprint of a dataset in either form, e.g. a `DicomJsonDataset` (see the module comment for what it covers). */
export function contentFingerprint(ds: AnyDataset): ContentFingerprint {
  const entries: FingerprintEntry[] = [];
  const top = (name: string, tag: string): void => {
    const v = values(ds, tag).join('\\');
    if (v !== '') entries.push({ path: name, value: v });
  };
  top('SOPClassUID', T.SOPClassUID);
  top('StudyInstanceUID', T.StudyInstanceUID);
  top('SeriesInstanceUID', T.SeriesInstanceUID);
  top('SOPInstanceUID', T.SOPInstanceUID);
  top('CompletionFlag', T.CompletionFlag);
  top('VerificationFlag', T.VerificationFlag);
  top('PreliminaryFlag', T.PreliminaryFlag);
  top('DocumentTitle', T.DocumentTitle);
  top('MIMETypeOfEncapsulatedDocument', T.MIMETypeOfEncapsulatedDocument);
  const concept = code(ds, T.ConceptNameCodeSequence);
  if (concept) entries.push({ path: 'ConceptName', value: concept });
  const doc = inlineBytes(ds, T.EncapsulatedDocument);
  if (doc) entries.push({ path: 'EncapsulatedDocument:sha256', value: sha256(doc) });
  contentItems(ds, 'Content', entries);
  const h = createHash('sha256');
  for (const e of entries) h.update(`${e.path}=${e.value}\n`);
  return { sha256: h.digest('hex'), entries };
}

function sha256(b: Uint8Array): string {
  return createHash('sha256').update(b).digest('hex');
}

export interface FingerprintComparison {
  readonly same: boolean;
  /**
   * Paths (tag positions, never values: no PHI) where the two differ, at most `limit`; the
   * inline-document hash is compared only when both sides carry the bytes.
   */
  readonly differences: readonly string[];
}

/**
 * Compare what we sent with what the PACS holds. An entry only the PACS lacks because it gave the
 * encapsulated document as a BulkDataURI (not inline) is not a difference.
 */
export function compareFingerprints(
  sent: ContentFingerprint,
  stored: ContentFingerprint,
  limit = 10,
): FingerprintComparison {
  const onlyInline = (e: FingerprintEntry) => e.path === 'EncapsulatedDocument:sha256';
  const a = new Map(sent.entries.map((e) => [e.path, e.value]));
  const b = new Map(stored.entries.map((e) => [e.path, e.value]));
  const bothInline = sent.entries.some(onlyInline) && stored.entries.some(onlyInline);
  const differences: string[] = [];
  for (const p of new Set([...a.keys(), ...b.keys()])) {
    if (p === 'EncapsulatedDocument:sha256' && !bothInline) continue;
    if (a.get(p) !== b.get(p)) differences.push(p);
  }
  return { same: differences.length === 0, differences: differences.slice(0, limit) };
}
