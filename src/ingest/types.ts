import type { InstanceIdentity } from '../dicom/dataset.js';
import type { LimitViolation } from '../dicom/limits.js';
import type { ErrorCode } from '../errors.js';

/**
 * The seam between the protocol front ends (STOW-RS router, WADO-RS retrieval by the QIDO poller,
 * later the C-STORE SCP) and durable storage. Front ends stream a received instance into a temporary
 * file and hand it to `InstanceSink.accept`; only when that promise resolves with `stored` or
 * `duplicate` is the instance durable (file fsynced and renamed, row committed) and may be
 * acknowledged to the sender (reference/dicom-sr-and-audit.md §7: ack only after durable write + commit).
 */

/** How an instance reached us. Closed set; matches the CHECK constraint on instances.received_via. */
export const ReceivedVia = {
  StowRs: 'stow-rs',
  WadoRs: 'wado-rs',
  CStore: 'c-store',
  Import: 'import',
} as const;
export type ReceivedVia = (typeof ReceivedVia)[keyof typeof ReceivedVia];

/**
 * What ingest stores from an instance's header, so that frame selection reads rows, not files
 * (issue 8). Attributes: SOP Common (PS3.3 C.12.1), General Series (C.7.3.1), General Image
 * (C.7.6.1), Image Pixel (C.7.6.3), Multi-frame (C.7.6.6); the transfer syntax from the File Meta
 * Information (PS3.10 §7.1). Columns of `instances` (migrations/0004_instance_header.sql).
 */
export interface InstanceHeader {
  /** SOP Class UID (0008,0016). */
  readonly sopClassUid: string;
  /** Transfer Syntax UID (0002,0010) of the stored file. */
  readonly transferSyntaxUid: string;
  /** Series Instance UID (0020,000E). */
  readonly seriesInstanceUid: string;
  /** Modality (0008,0060); null when absent or empty. */
  readonly modality: string | null;
  /** Instance Number (0020,0013), IS. */
  readonly instanceNumber: number | null;
  /** Series Number (0020,0011), IS. */
  readonly seriesNumber: number | null;
  /** Number of Frames (0028,0008), IS; 1 for a single-frame object or when absent (C.7.6.6). */
  readonly numberOfFrames: number;
  /** Rows (0028,0010). */
  readonly rows: number | null;
  /** Columns (0028,0011). */
  readonly columns: number | null;
  /** Photometric Interpretation (0028,0004). */
  readonly photometricInterpretation: string | null;
  /** Body Part Examined (0018,0015). */
  readonly bodyPartExamined: string | null;
  /** Series Description (0008,103E). */
  readonly seriesDescription: string | null;
  /** Specific Character Set (0008,0005) as received, multiple values joined by `\`. */
  readonly specificCharacterSet: string | null;
  /** Whether the data set has (Float/Double Float) Pixel Data (7FE0,0010/0008/0009). */
  readonly hasPixelData: boolean;
}

/** What every row of `instances` holds: the header, where the bytes are, how and from whom they came. */
export interface InstanceRecord extends InstanceHeader {
  /** SOP Instance UID (0008,0018). */
  readonly sopInstanceUid: string;
  /** Study Instance UID (0020,000D). */
  readonly studyInstanceUid: string;
  readonly filePath: string;
  readonly fileSha256: string;
  readonly sizeBytes: number;
  readonly receivedVia: ReceivedVia;
  /** Who sent it: HTTP user, calling AE title, or the remote node it was retrieved from. */
  readonly actor: string | null;
  /**
   * The local AE it was sent to (migration 0020): the Called AE Title of the C-STORE association
   * or the {AET} of a STOW-RS to /dicomweb/aets/{AET}/studies; null when it reached no local AE.
   */
  readonly calledAeTitle?: string | null;
}

/** One row of `instances`: the one definition of a stored instance (issue 8). */
export interface StoredInstance extends InstanceRecord {
  readonly receivedAt: Date;
  /**
   * When a decode of this instance began and has not yet answered (migration 0008); set at a job's
   * start only if a previous attempt died while decoding it.
   */
  readonly decodeStartedAt?: Date | null;
}

/**
 * Why an instance was quarantined (migration 0008; matches its CHECK). Closed set. Each means the
 * file itself is the likely cause, so it is never decoded again (issue 9: not retried into the ground).
 */
export const QuarantineReason = {
  /** Decoding broke a DICOM limit (src/dicom/limits.ts): error code dicom-hostile. */
  LimitExceeded: 'limit-exceeded',
  /** The image-prep worker hit its heap cap while holding the file. */
  WorkerOutOfMemory: 'worker-out-of-memory',
  /** The image-prep worker threw outside its handler or exited while holding the file. */
  WorkerCrashed: 'worker-crashed',
  /** The frame ran past imagePrep.frameTimeoutMs and the worker was terminated. */
  TimedOut: 'timed-out',
  /** The instance was being decoded when the job's process died (found at the job's next claim). */
  ProcessDiedWhileDecoding: 'process-died-while-decoding',
} as const;
export type QuarantineReason = (typeof QuarantineReason)[keyof typeof QuarantineReason];

export interface ReceivedFile {
  /** Temporary file holding exactly the received bytes; the sink moves it (or deletes it on failure). */
  readonly path: string;
  readonly sizeBytes: number;
  /** Hex SHA-256 of the bytes, computed while streaming. */
  readonly sha256: string;
}

export interface ReceiptContext {
  readonly via: ReceivedVia;
  /** Peer network address (HTTP remote address, DIMSE peer IP). */
  readonly remoteAddress?: string;
  /** Who sent it: HTTP user, calling AE title, or configured remote node name. */
  readonly actor?: string;
  /**
   * The local AE the instance was sent to: the listener's AE title for C-STORE, the {AET} of
   * /dicomweb/aets/{AET}/studies for STOW-RS. Recorded on the row and the audit event, and
   * matched by routing rules (config routes[].match.calledAeTitle).
   */
  readonly calledAeTitle?: string;
  /** Study Instance UID from the STOW-RS request URI, if any (PS3.18 §10.5). */
  readonly expectedStudyInstanceUid?: string;
  /**
   * The SOP Class / Instance UIDs the C-STORE-RQ announced (Affected SOP Class/Instance UID,
   * PS3.7 Table 9.3-1): a data set that names others is refused with 0xA900 (PS3.4 B.2.3).
   */
  readonly expectedSopClassUid?: string;
  readonly expectedSopInstanceUid?: string;
}

/**
 * STOW-RS Failure Reason values (PS3.18 Table 10.5.3-2, PS3.4 Annex B status codes).
 * Also the DIMSE C-STORE status for the same failure.
 */
export const FailureReason = {
  /** 0x0110 Processing failure. */
  ProcessingFailure: 0x0110,
  /** 0x0111 Duplicate SOP Instance (same UID, different content). */
  DuplicateSopInstance: 0x0111,
  /** 0x0122 Referenced SOP Class not supported. */
  SopClassNotSupported: 0x0122,
  /** 0xA700 Refused: out of resources. */
  OutOfResources: 0xa700,
  /** 0xA900 Error: data set does not match SOP Class (also used for a Study UID that differs from the URI). */
  DataSetDoesNotMatchSopClass: 0xa900,
  /** 0xC000 Error: cannot understand. */
  CannotUnderstand: 0xc000,
  /** 0xC122 Referenced Transfer Syntax not supported. */
  TransferSyntaxNotSupported: 0xc122,
} as const;
export type FailureReason = (typeof FailureReason)[keyof typeof FailureReason];

export type InstanceOutcome =
  | { readonly status: 'stored' | 'duplicate'; readonly identity: InstanceIdentity; readonly storedPath: string }
  | {
      readonly status: 'failed';
      readonly failureReason: FailureReason;
      readonly code: ErrorCode;
      readonly message: string;
      /** Which DICOM limit the instance broke (code dicom-hostile, src/dicom/limits.ts). */
      readonly violation?: LimitViolation;
      readonly sopClassUid?: string;
      readonly sopInstanceUid?: string;
    };

export interface InstanceSink {
  /** Never throws: every failure becomes a `failed` outcome with its Failure Reason. */
  accept(file: ReceivedFile, ctx: ReceiptContext): Promise<InstanceOutcome>;
  /**
   * Called before a front end writes anything of a request or retrieve that will bring about
   * `expectedBytes` (0 when unknown): rejects with a storage-full RadScribeError (HTTP 507) when the
   * storage has no room, so nothing is half-written (issue 9). Optional: a sink without storage limits
   * admits everything.
   */
  admit?(expectedBytes: number, ctx: ReceiptContext): Promise<void>;
}

/**
 * One instance offered and refused before or instead of the sink (a part the front end could not
 * read or frame, a request refused as a whole). UIDs, hashes and codes only, never PHI: it goes to
 * the audit trail as `instance-refused` (outcome 8, PS3.15 A.5.3.5 with a failed outcome).
 */
export interface InstanceRefusal {
  readonly via: ReceivedVia;
  readonly code: ErrorCode;
  /** The STOW-RS Failure Reason the sender was given for this part; absent for a whole-request refusal. */
  readonly failureReason?: FailureReason;
  /** HTTP status of the answer, for a refusal of the whole request (400, 413, 415). */
  readonly httpStatus?: number;
  /** 0-based position of the part in the request. */
  readonly part?: number;
  /** SHA-256 and size of the bytes received for this part, when they were read. */
  readonly sha256?: string;
  readonly sizeBytes?: number;
  readonly remoteAddress?: string;
  readonly actor?: string;
  /** The local AE the request was addressed to (STOW-RS per-AE path, C-STORE listener). */
  readonly calledAeTitle?: string;
  readonly studyInstanceUid?: string;
}

/** Where front ends report refusals they make themselves (the sink audits its own). Never throws. */
export interface RefusalRecorder {
  instanceRefused(refusal: InstanceRefusal): Promise<void>;
}
