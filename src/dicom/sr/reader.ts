import { DicomError, ErrorCode, SrValidationError } from '../../errors.js';
import { isValidUid, type NaturalDataset, parsePart10 } from '../dataset.js';
import { SR_SOP_CLASSES } from '../uids.js';
import { type Code, code, formatCode } from './coding.js';
import {
  CodeContentItem,
  ContainerContentItem,
  type ContentItem,
  ContinuityOfContent,
  ImageContentItem,
  isRelationshipType,
  isValueType,
  NumContentItem,
  OtherContentItem,
  PnameContentItem,
  ReferencedContentItem,
  type RelationshipType,
  TextContentItem,
  UidRefContentItem,
  ValueType,
} from './content-items.js';

/**
 * Read an SR document (PS3.3 §C.17) back into the typed content tree of content-items.ts. Used to
 * check our own output and to show foreign SRs. Works on bytes only (STYLE §2.1).
 */

/** One referenced instance from the Hierarchical SOP Instance Reference Macro (PS3.3 Table C.17-3a). */
export interface SrEvidenceReference {
  readonly studyInstanceUid: string;
  readonly seriesInstanceUid: string;
  readonly sopClassUid: string;
  readonly sopInstanceUid: string;
}

export interface SrContributingEquipment {
  readonly purposeOfReference: readonly Code[];
  readonly manufacturer: string | undefined;
  readonly manufacturerModelName: string | undefined;
  readonly softwareVersions: string | undefined;
  readonly deviceUid: string | undefined;
}

export interface SrDocument {
  readonly transferSyntaxUid: string;
  readonly implementationClassUid: string | undefined;
  readonly implementationVersionName: string | undefined;
  /** Specific Character Set as written in the file (dcmjs rewrites its copy to ISO_IR 192). */
  readonly specificCharacterSet: string | undefined;
  readonly sopClassUid: string;
  readonly sopInstanceUid: string;
  readonly studyInstanceUid: string;
  readonly seriesInstanceUid: string;
  readonly modality: string | undefined;
  readonly seriesNumber: number | undefined;
  readonly seriesDescription: string | undefined;
  readonly instanceNumber: number | undefined;
  readonly manufacturer: string | undefined;
  readonly manufacturerModelName: string | undefined;
  readonly softwareVersions: string | undefined;
  readonly deviceSerialNumber: string | undefined;
  /** Device UIDs (0018,1002) from the Contributing Equipment Sequence. */
  readonly contributingDeviceUids: readonly string[];
  /** Contributing Equipment Sequence (0018,A001) items (PS3.3 Table C.12-1; IHE AIR §6.5.3.1). */
  readonly contributingEquipment: readonly SrContributingEquipment[];
  /** Predecessor Documents Sequence (0040,A360), flattened. */
  readonly predecessorDocuments: readonly SrEvidenceReference[];
  readonly completionFlag: string | undefined;
  readonly completionFlagDescription: string | undefined;
  readonly verificationFlag: string | undefined;
  readonly preliminaryFlag: string | undefined;
  /** Number of items in the Verifying Observer Sequence (0040,A073). */
  readonly verifyingObserverCount: number;
  readonly contentDate: string | undefined;
  readonly contentTime: string | undefined;
  readonly timezoneOffsetFromUtc: string | undefined;
  readonly instanceCreationDate: string | undefined;
  readonly instanceCreationTime: string | undefined;
  /** Template Identifier (0040,DB00) of the root's Content Template Sequence, if any. */
  readonly templateIdentifier: string | undefined;
  readonly currentRequestedProcedureEvidence: readonly SrEvidenceReference[];
  readonly pertinentOtherEvidence: readonly SrEvidenceReference[];
  /** The root CONTAINER. */
  readonly content: ContainerContentItem;
}

function str(v: unknown): string | undefined {
  if (Array.isArray(v)) return str(v[0]);
  if (typeof v === 'string') return v;
  if (typeof v === 'number') return String(v);
  return undefined;
}
function num(v: unknown): number | undefined {
  const s = str(v);
  if (s === undefined || s.trim() === '') return undefined;
  const n = Number(s);
  return Number.isFinite(n) ? n : undefined;
}
function items(v: unknown): NaturalDataset[] {
  return Array.isArray(v) ? v.filter((x): x is NaturalDataset => x !== null && typeof x === 'object') : [];
}
function numbers(v: unknown): number[] {
  const list = Array.isArray(v) ? v : v === undefined || v === null || v === '' ? [] : [v];
  return list.map((x) => Number(x)).filter((n) => Number.isFinite(n));
}

function readCode(item: NaturalDataset | undefined): Code | undefined {
  if (item === undefined) return undefined;
  const value = str(item.CodeValue) ?? str(item.LongCodeValue) ?? str(item.URNCodeValue);
  const scheme = str(item.CodingSchemeDesignator) ?? '';
  const meaning = str(item.CodeMeaning) ?? '';
  const version = str(item.CodingSchemeVersion);
  return code(value ?? '', scheme, meaning, version === '' ? undefined : version);
}

const COMMON_KEYS: ReadonlySet<string> = new Set([
  '_vrMap',
  'RelationshipType',
  'ValueType',
  'ConceptNameCodeSequence',
  'ContentSequence',
  'ContinuityOfContent',
  'ContentTemplateSequence',
]);

/** Parse one content item (and its subtree); `path` is the 1-based position path used in errors (PS3.3 §C.17.3.2.5). */
function readItem(ds: NaturalDataset, path: string, isRoot: boolean): ContentItem {
  try {
    const rel = str(ds.RelationshipType);
    let relationshipType: RelationshipType | undefined;
    if (!isRoot) {
      if (!isRelationshipType(rel)) throw new SrValidationError(`unknown Relationship Type ${JSON.stringify(rel)}`);
      relationshipType = rel;
    }
    const refIds = numbers(ds.ReferencedContentItemIdentifier);
    const vt = str(ds.ValueType);
    if (vt === undefined && refIds.length > 0 && relationshipType !== undefined) {
      return new ReferencedContentItem({ relationshipType, referencedContentItemIdentifier: refIds });
    }
    if (!isValueType(vt)) throw new SrValidationError(`unknown Value Type ${JSON.stringify(vt)}`);
    const name = readCode(items(ds.ConceptNameCodeSequence)[0]);
    const children = items(ds.ContentSequence).map((c, i) => readItem(c, `${path}.${i + 1}`, false));
    const base = {
      ...(name === undefined ? {} : { name }),
      ...(relationshipType === undefined ? {} : { relationshipType }),
      children,
    };
    switch (vt) {
      case ValueType.CONTAINER: {
        const tid = str(items(ds.ContentTemplateSequence)[0]?.TemplateIdentifier);
        const continuity = str(ds.ContinuityOfContent);
        return new ContainerContentItem({
          ...base,
          continuityOfContent:
            continuity === ContinuityOfContent.CONTINUOUS
              ? ContinuityOfContent.CONTINUOUS
              : ContinuityOfContent.SEPARATE,
          ...(tid === undefined ? {} : { templateIdentifier: tid }),
        });
      }
      case ValueType.TEXT:
        return new TextContentItem({ ...(base as typeof base & { name: Code }), value: str(ds.TextValue) ?? '' });
      case ValueType.CODE:
        return new CodeContentItem({
          ...(base as typeof base & { name: Code }),
          value: readCode(items(ds.ConceptCodeSequence)[0]) ?? (undefined as unknown as Code),
        });
      case ValueType.UIDREF:
        return new UidRefContentItem({ ...(base as typeof base & { name: Code }), value: str(ds.UID) ?? '' });
      case ValueType.NUM: {
        const mv = items(ds.MeasuredValueSequence)[0];
        const value = mv === undefined ? undefined : num(mv.NumericValue);
        const unit = mv === undefined ? undefined : readCode(items(mv.MeasurementUnitsCodeSequence)[0]);
        return new NumContentItem({
          ...(base as typeof base & { name: Code }),
          value,
          ...(unit === undefined ? {} : { unit }),
        });
      }
      case ValueType.PNAME: {
        const pn = Array.isArray(ds.PersonName) ? ds.PersonName[0] : ds.PersonName;
        const value = typeof pn === 'string' ? pn : str((pn as { Alphabetic?: unknown } | undefined)?.Alphabetic);
        return new PnameContentItem({ ...(base as typeof base & { name: Code }), value: value ?? '' });
      }
      case ValueType.IMAGE: {
        const ref = items(ds.ReferencedSOPSequence)[0];
        return new ImageContentItem({
          ...base,
          referencedSopClassUid: str(ref?.ReferencedSOPClassUID) ?? '',
          referencedSopInstanceUid: str(ref?.ReferencedSOPInstanceUID) ?? '',
          frameNumbers: numbers(ref?.ReferencedFrameNumber),
        });
      }
      default: {
        const attributes: NaturalDataset = {};
        for (const [k, v] of Object.entries(ds)) if (!COMMON_KEYS.has(k)) attributes[k] = v;
        return new OtherContentItem({ ...base, valueType: vt, attributes });
      }
    }
  } catch (err) {
    if (err instanceof DicomError) throw err;
    // A foreign SR that breaks our model is bad input: classify it once, here (STYLE rule 2).
    throw new DicomError(ErrorCode.DicomInvalid, `readSr: content item ${path}: ${(err as Error).message}`, {
      cause: err,
    });
  }
}

function readEvidence(seq: unknown): SrEvidenceReference[] {
  const out: SrEvidenceReference[] = [];
  for (const study of items(seq)) {
    for (const series of items(study.ReferencedSeriesSequence)) {
      for (const sop of items(series.ReferencedSOPSequence)) {
        out.push({
          studyInstanceUid: str(study.StudyInstanceUID) ?? '',
          seriesInstanceUid: str(series.SeriesInstanceUID) ?? '',
          sopClassUid: str(sop.ReferencedSOPClassUID) ?? '',
          sopInstanceUid: str(sop.ReferencedSOPInstanceUID) ?? '',
        });
      }
    }
  }
  return out;
}

/** Parse an SR Part 10 file. Throws DicomError(dicom-invalid) for non-SR or malformed content. */
export function readSr(part10: Uint8Array): SrDocument {
  const inst = parsePart10(part10);
  const charsetRaw = (inst.dict['00080005'] as { _rawValue?: unknown } | undefined)?._rawValue;
  const specificCharacterSet = str(charsetRaw)?.trim();
  // parsePart10 decodes every text element, in sequence items too, under the character set in force
  // there (dataset.ts, character-set.ts); dcmjs alone mis-decodes nested items (dcmjs-org/dcmjs #503, #508).
  const d = inst.dataset as NaturalDataset;

  const sopClassUid = str(d.SOPClassUID);
  if (sopClassUid === undefined || !SR_SOP_CLASSES.has(sopClassUid)) {
    throw new DicomError(ErrorCode.DicomInvalid, 'readSr: SOP Class UID is not an SR Storage SOP Class');
  }
  const uid = (kw: string): string => {
    const v = str(d[kw]);
    if (!isValidUid(v)) throw new DicomError(ErrorCode.DicomInvalid, `readSr: missing or invalid ${kw}`);
    return v;
  };
  if (str(d.ValueType) !== ValueType.CONTAINER) {
    throw new DicomError(ErrorCode.DicomInvalid, 'readSr: root content item is not a CONTAINER (PS3.3 §C.17.3)');
  }
  const content = readItem(d, '1', true) as ContainerContentItem;
  return {
    transferSyntaxUid: inst.transferSyntaxUid,
    implementationClassUid: str(inst.meta.ImplementationClassUID),
    implementationVersionName: str(inst.meta.ImplementationVersionName)?.trim(),
    specificCharacterSet,
    sopClassUid,
    sopInstanceUid: uid('SOPInstanceUID'),
    studyInstanceUid: uid('StudyInstanceUID'),
    seriesInstanceUid: uid('SeriesInstanceUID'),
    modality: str(d.Modality),
    seriesNumber: num(d.SeriesNumber),
    seriesDescription: str(d.SeriesDescription),
    instanceNumber: num(d.InstanceNumber),
    manufacturer: str(d.Manufacturer),
    manufacturerModelName: str(d.ManufacturerModelName),
    softwareVersions: str(d.SoftwareVersions),
    deviceSerialNumber: str(d.DeviceSerialNumber),
    contributingDeviceUids: items(d.ContributingEquipmentSequence)
      .map((e) => str(e.DeviceUID))
      .filter((u): u is string => u !== undefined),
    contributingEquipment: items(d.ContributingEquipmentSequence).map((e) => ({
      purposeOfReference: items(e.PurposeOfReferenceCodeSequence).map((c) => readCode(c) as Code),
      manufacturer: str(e.Manufacturer),
      manufacturerModelName: str(e.ManufacturerModelName),
      softwareVersions: str(e.SoftwareVersions),
      deviceUid: str(e.DeviceUID),
    })),
    predecessorDocuments: readEvidence(d.PredecessorDocumentsSequence),
    completionFlag: str(d.CompletionFlag),
    completionFlagDescription: str(d.CompletionFlagDescription),
    verificationFlag: str(d.VerificationFlag),
    preliminaryFlag: str(d.PreliminaryFlag),
    verifyingObserverCount: items(d.VerifyingObserverSequence).length,
    contentDate: str(d.ContentDate),
    contentTime: str(d.ContentTime),
    timezoneOffsetFromUtc: str(d.TimezoneOffsetFromUTC),
    instanceCreationDate: str(d.InstanceCreationDate),
    instanceCreationTime: str(d.InstanceCreationTime),
    templateIdentifier: content.templateIdentifier,
    currentRequestedProcedureEvidence: readEvidence(d.CurrentRequestedProcedureEvidenceSequence),
    pertinentOtherEvidence: readEvidence(d.PertinentOtherEvidenceSequence),
    content,
  };
}

const RENDER_TEXT_MAX = 4000;

function renderValue(item: ContentItem): string {
  if (item instanceof TextContentItem || item instanceof PnameContentItem || item instanceof UidRefContentItem) {
    const v = item.value.length > RENDER_TEXT_MAX ? `${item.value.slice(0, RENDER_TEXT_MAX)}…` : item.value;
    return ` = "${v.replace(/\r\n|\r|\n/g, ' ⏎ ')}"`;
  }
  if (item instanceof CodeContentItem) return ` = ${formatCode(item.value)}`;
  if (item instanceof NumContentItem)
    return item.value === undefined ? ' = (no value)' : ` = ${item.value} ${item.unit?.value ?? ''}`.trimEnd();
  if (item instanceof ImageContentItem) {
    const frames = item.frameNumbers.length > 0 ? ` frames ${item.frameNumbers.join(',')}` : '';
    return ` = image ${item.referencedSopClassUid} / ${item.referencedSopInstanceUid}${frames}`;
  }
  if (item instanceof ContainerContentItem)
    return ` [${item.continuityOfContent}${item.templateIdentifier ? `, TID ${item.templateIdentifier}` : ''}]`;
  if (item instanceof ReferencedContentItem) return ` -> item ${item.referencedContentItemIdentifier.join('.')}`;
  if (item instanceof OtherContentItem) {
    const a = item.attributes;
    const v = str(a.Date) ?? str(a.Time) ?? str(a.DateTime) ?? str(a.GraphicType) ?? str(a.TemporalRangeType);
    return v === undefined ? '' : ` = ${v}`;
  }
  return '';
}

function renderItem(item: ContentItem, depth: number, lines: string[]): void {
  const rel = item.relationshipType === undefined ? '' : `${item.relationshipType} `;
  const name = item.name === undefined ? '' : ` ${formatCode(item.name)}`;
  lines.push(`${'  '.repeat(depth)}${rel}${item.valueType}${name}${renderValue(item)}`);
  for (const child of item.children) renderItem(child, depth + 1, lines);
}

/**
 * Plain-text, indented rendering of the document flags and content tree (for the demo and operators).
 * Deliberately omits the Patient module: no PHI on a console. Multi-line text is folded onto one line.
 */
export function renderSrTree(doc: SrDocument): string {
  const lines = [
    `SR ${doc.sopInstanceUid} (SOP Class ${doc.sopClassUid})`,
    `Series ${doc.seriesNumber ?? '-'} "${doc.seriesDescription ?? ''}"`,
    `Preliminary: ${doc.preliminaryFlag ?? '-'}  Completion: ${doc.completionFlag ?? '-'}${
      doc.completionFlagDescription ? ` (${doc.completionFlagDescription})` : ''
    }  Verification: ${doc.verificationFlag ?? '-'}`,
    `Content: ${doc.contentDate ?? ''} ${doc.contentTime ?? ''} ${doc.timezoneOffsetFromUtc ?? ''}`.trimEnd(),
    `Evidence: ${doc.currentRequestedProcedureEvidence.length} instance(s)`,
    '',
  ];
  renderItem(doc.content, 0, lines);
  return `${lines.join('\n')}\n`;
}

/** A narrative finding found in an SR tree: TEXT (121071, DCM, "Finding") and the images it was inferred from. */
export interface SrFindingText {
  readonly text: string;
  readonly images: readonly { sopClassUid: string; sopInstanceUid: string; frameNumbers: readonly number[] }[];
}

/**
 * Every TEXT Finding (121071, DCM) in document order, wherever it sits: under the Findings section
 * (TID 2000, report profile) or in a TID 1501 measurement group (air profile). The one accessor the
 * gateway needs to show either profile the same way.
 */
export function findingTexts(doc: SrDocument | ContentItem): SrFindingText[] {
  const out: SrFindingText[] = [];
  const visit = (item: ContentItem) => {
    if (item instanceof TextContentItem && item.name?.value === '121071' && item.name.scheme === 'DCM') {
      out.push({
        text: item.value,
        images: item.children
          .filter((c): c is ImageContentItem => c instanceof ImageContentItem)
          .map((c) => ({
            sopClassUid: c.referencedSopClassUid,
            sopInstanceUid: c.referencedSopInstanceUid,
            frameNumbers: c.frameNumbers,
          })),
      });
    }
    for (const c of item.children) visit(c);
  };
  visit('content' in doc && doc.content instanceof ContainerContentItem ? doc.content : (doc as ContentItem));
  return out;
}
