import type { InstanceIdentity } from '../dicom/dataset.js';
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
  /** Study Instance UID from the STOW-RS request URI, if any (PS3.18 §10.5). */
  readonly expectedStudyInstanceUid?: string;
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
      readonly sopClassUid?: string;
      readonly sopInstanceUid?: string;
    };

export interface InstanceSink {
  /** Never throws: every failure becomes a `failed` outcome with its Failure Reason. */
  accept(file: ReceivedFile, ctx: ReceiptContext): Promise<InstanceOutcome>;
}
