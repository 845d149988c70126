import { ErrorCode, RadScribeError } from '../errors.js';
import { formatStatus } from './store-scu.js';

/**
 * C-FIND, C-MOVE and C-GET response statuses (PS3.4 C.4.1.1.4 Table C.4-1, C.4.2.1.5 Table C.4-2,
 * C.4.3.1.4 Table C.4-3; PS3.7 Annex C) and what each means for the SCU. Classified once, here.
 */

/** What one response status means. Closed set. */
export const QrOutcome = {
  /** 0xFF00 / 0xFF01: a match (C-FIND) or progress (C-MOVE/C-GET) follows; more responses come. */
  Pending: 'pending',
  /** 0x0000: the query is complete / every sub-operation succeeded. */
  Success: 'success',
  /** 0xB000 (and other 0xBxxx): sub-operations complete, one or more failed or warned. */
  Warning: 'warning',
  /** 0xFE00: ended by our C-CANCEL. */
  Cancelled: 'cancelled',
  /** 0xA7xx out of resources, 0x0213 resource limitation: the same request may work later. */
  Transient: 'transient',
  /** A801 unknown destination, A900 identifier does not match, Cxxx unable to process, 0122, …. */
  Permanent: 'permanent',
} as const;
export type QrOutcome = (typeof QrOutcome)[keyof typeof QrOutcome];

export const QrStatus = {
  Success: 0x0000,
  Pending: 0xff00,
  /** C-FIND: matches continuing, one or more Optional Keys not supported. */
  PendingWarning: 0xff01,
  Cancel: 0xfe00,
  /** C-MOVE/C-GET: sub-operations complete, one or more failures or warnings. */
  SubOperationsWarning: 0xb000,
  /** Refused: Out of Resources (C-FIND). */
  OutOfResources: 0xa700,
  /** Refused: Out of Resources – unable to calculate number of matches (C-MOVE/C-GET). */
  OutOfResourcesMatches: 0xa701,
  /** Refused: Out of Resources – unable to perform sub-operations (C-MOVE/C-GET). */
  OutOfResourcesSubOperations: 0xa702,
  /** Refused: Move Destination unknown (C-MOVE). */
  MoveDestinationUnknown: 0xa801,
  /** Error: Identifier does not match SOP Class. */
  IdentifierDoesNotMatchSopClass: 0xa900,
  /** Refused: SOP class not supported (PS3.7 C.5.1). */
  SopClassNotSupported: 0x0122,
  /** Resource limitation (PS3.7 C.5.17). */
  ResourceLimitation: 0x0213,
} as const;

export interface QrStatusClass {
  readonly outcome: QrOutcome;
  readonly meaning: string;
}

const NAMED: ReadonlyMap<number, QrStatusClass> = new Map<number, QrStatusClass>([
  [QrStatus.Success, { outcome: QrOutcome.Success, meaning: 'Success' }],
  [QrStatus.Pending, { outcome: QrOutcome.Pending, meaning: 'Pending' }],
  [
    QrStatus.PendingWarning,
    { outcome: QrOutcome.Pending, meaning: 'Pending (one or more Optional Keys not supported)' },
  ],
  [QrStatus.Cancel, { outcome: QrOutcome.Cancelled, meaning: 'Cancel' }],
  [
    QrStatus.SubOperationsWarning,
    { outcome: QrOutcome.Warning, meaning: 'Sub-operations complete, one or more failures or warnings' },
  ],
  [
    QrStatus.OutOfResourcesMatches,
    { outcome: QrOutcome.Transient, meaning: 'Out of Resources: unable to calculate number of matches' },
  ],
  [
    QrStatus.OutOfResourcesSubOperations,
    { outcome: QrOutcome.Transient, meaning: 'Out of Resources: unable to perform sub-operations' },
  ],
  [QrStatus.MoveDestinationUnknown, { outcome: QrOutcome.Permanent, meaning: 'Move Destination unknown' }],
  [QrStatus.SopClassNotSupported, { outcome: QrOutcome.Permanent, meaning: 'SOP class not supported' }],
  [QrStatus.ResourceLimitation, { outcome: QrOutcome.Transient, meaning: 'Resource limitation' }],
]);

/**
 * Classify a Q/R response status: the named ones, then the families (A7xx out of resources, A9xx
 * identifier does not match SOP class, Cxxx unable to process, Bxxx warning); anything else is a
 * failure a retry will not fix.
 */
export function classifyQrStatus(status: number): QrStatusClass {
  const named = NAMED.get(status);
  if (named) return named;
  if ((status & 0xff00) === 0xa700) return { outcome: QrOutcome.Transient, meaning: 'Refused: Out of Resources' };
  if ((status & 0xff00) === 0xa900)
    return { outcome: QrOutcome.Permanent, meaning: 'Error: Identifier does not match SOP Class' };
  if ((status & 0xf000) === 0xc000) return { outcome: QrOutcome.Permanent, meaning: 'Error: Unable to process' };
  if ((status & 0xf000) === 0xb000) return { outcome: QrOutcome.Warning, meaning: 'Warning' };
  return { outcome: QrOutcome.Permanent, meaning: 'Failure' };
}

/** Which Q/R operation failed. */
export const QrOperation = { Find: 'C-FIND', Move: 'C-MOVE', Get: 'C-GET' } as const;
export type QrOperation = (typeof QrOperation)[keyof typeof QrOperation];

/**
 * A C-FIND / C-MOVE / C-GET that the SCP answered with a failure status. Transient (A7xx, 0213) is
 * `pacs-unavailable`, retried; everything else `pacs-rejected`. Association failures stay
 * DimseAssociationError (requestor.ts), already classified the same way.
 */
export class QueryRetrieveError extends RadScribeError {
  override name = 'QueryRetrieveError';
  readonly outcome: QrOutcome;
  constructor(
    readonly operation: QrOperation,
    readonly status: number,
    readonly errorComment?: string,
  ) {
    const c = classifyQrStatus(status);
    super(
      c.outcome === QrOutcome.Transient ? ErrorCode.PacsUnavailable : ErrorCode.PacsRejected,
      `${operation} failed: ${formatStatus(status)} ${c.meaning}${errorComment ? ` (${errorComment})` : ''}`,
    );
    this.outcome = c.outcome;
  }
}
