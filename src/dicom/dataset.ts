import dcmjs from 'dcmjs';
import { DicomError, ErrorCode } from '../errors.js';

/**
 * Part 10 parsing on dcmjs (PS3.10 §7). Works on buffers only; no I/O here (STYLE §2.1).
 * dcmjs logs at warn for every unknown tag; silence it once.
 */
(dcmjs as unknown as { log: { setLevel(l: string): void } }).log.setLevel('error');

/** A naturalized dataset (dcmjs keyword → value). */
export type NaturalDataset = Record<string, unknown>;

export interface Part10Instance {
  /** File Meta Information, naturalized (TransferSyntaxUID, MediaStorageSOPClassUID…). */
  readonly meta: NaturalDataset;
  /** The data set, naturalized. */
  readonly dataset: NaturalDataset;
  /** Raw dcmjs dictionary (tag → {vr, Value}), for code that needs the exact encoding. */
  readonly dict: Record<string, { vr: string; Value: unknown[] }>;
  readonly transferSyntaxUid: string;
}

/** The identifying UIDs every stored instance must have (PS3.3 C.12.1, C.7.2.1, C.7.3.1). */
export interface InstanceIdentity {
  readonly studyInstanceUid: string;
  readonly seriesInstanceUid: string;
  readonly sopInstanceUid: string;
  readonly sopClassUid: string;
  readonly transferSyntaxUid: string;
  readonly modality: string | undefined;
}

const UID_RE = /^(0|[1-9][0-9]*)(\.(0|[1-9][0-9]*))*$/;

export function isValidUid(uid: unknown): uid is string {
  return typeof uid === 'string' && uid.length > 0 && uid.length <= 64 && UID_RE.test(uid);
}

function toArrayBuffer(buf: Uint8Array): ArrayBuffer {
  return buf.buffer.slice(buf.byteOffset, buf.byteOffset + buf.byteLength) as ArrayBuffer;
}

/**
 * Parse a Part 10 file. `untilTag` stops before a tag (e.g. '7FE00010' to skip pixel data when only
 * the header is needed). Throws DicomError(dicom-invalid) for anything dcmjs cannot read.
 */
export function parsePart10(buf: Uint8Array, options: { untilPixelData?: boolean } = {}): Part10Instance {
  if (buf.byteLength < 132 || buf[128] !== 0x44 || buf[129] !== 0x49 || buf[130] !== 0x43 || buf[131] !== 0x4d) {
    throw new DicomError(ErrorCode.DicomInvalid, 'not a DICOM Part 10 file: no "DICM" prefix at offset 128');
  }
  let parsed: {
    meta: Record<string, { vr: string; Value: unknown[] }>;
    dict: Record<string, { vr: string; Value: unknown[] }>;
  };
  try {
    parsed = dcmjs.data.DicomMessage.readFile(toArrayBuffer(buf), {
      ignoreErrors: false,
      untilTag: options.untilPixelData ? '7FE00010' : undefined,
      includeUntilTagValue: false,
    }) as unknown as typeof parsed;
  } catch (err) {
    throw new DicomError(
      ErrorCode.DicomInvalid,
      `unreadable DICOM data set: ${(err as Error)?.message ?? String(err)}`,
      {
        cause: err,
      },
    );
  }
  const naturalize = dcmjs.data.DicomMetaDictionary.naturalizeDataset as (d: unknown) => NaturalDataset;
  const meta = naturalize(parsed.meta);
  const dataset = naturalize(parsed.dict);
  const ts = meta.TransferSyntaxUID;
  if (!isValidUid(ts))
    throw new DicomError(ErrorCode.DicomInvalid, 'file meta lacks a valid Transfer Syntax UID (0002,0010)');
  return { meta, dataset, dict: parsed.dict, transferSyntaxUid: ts };
}

/** Extract and validate the identifying UIDs; throws DicomError(dicom-invalid) naming the first missing one. */
export function instanceIdentity(inst: Part10Instance): InstanceIdentity {
  const d = inst.dataset;
  const need = (kw: string, tag: string): string => {
    const v = d[kw];
    if (!isValidUid(v)) throw new DicomError(ErrorCode.DicomInvalid, `missing or invalid ${kw} ${tag}`);
    return v;
  };
  const modality = typeof d.Modality === 'string' && d.Modality.length > 0 ? d.Modality : undefined;
  return {
    studyInstanceUid: need('StudyInstanceUID', '(0020,000D)'),
    seriesInstanceUid: need('SeriesInstanceUID', '(0020,000E)'),
    sopInstanceUid: need('SOPInstanceUID', '(0008,0018)'),
    sopClassUid: need('SOPClassUID', '(0008,0016)'),
    transferSyntaxUid: inst.transferSyntaxUid,
    modality,
  };
}
