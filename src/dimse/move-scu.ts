import { isValidUid } from '../dicom/dataset.js';
import {
  CommandField,
  encodeQueryRetrieveRq,
  parseResponse,
  type SubOperations,
  subOperationsOf,
} from './dimse-command.js';
import { FindProtocolError } from './find-scu.js';
import { decodeIdentifier, encodeIdentifier, type Identifier } from './identifier.js';
import { type QrAssociation, type QrPeer, QrSopClass, QueryLevel, withQrAssociation } from './query-retrieve-scu.js';
import { classifyQrStatus, QrOperation, QrOutcome, QueryRetrieveError } from './query-retrieve-status.js';

/**
 * C-MOVE SCU (PS3.4 C.4.2, Study Root Query/Retrieve Information Model – MOVE). The Move
 * Destination is one of RadScribe's own listening AE titles: the SCP opens its own association to
 * that listener and sends each instance by C-STORE (the sub-operations), which the Storage SCP
 * (storage-scp.ts) answers only once the instance is durable. So when the final C-MOVE-RSP comes,
 * everything it counts as completed is already stored here.
 *
 * Pending responses (0xFF00) carry the sub-operation counts (PS3.4 C.4.2.1.4: Remaining, Completed,
 * Failed, Warning); the final one the totals and, when some failed, the Failed SOP Instance UID List
 * (0008,0058) in its identifier. 0x0000 all completed; 0xB000 some failed or warned (returned, the
 * caller decides); 0xFE00 cancelled; A701/A702 (out of resources), A801 (Move Destination unknown),
 * A900, Cxxx: QueryRetrieveError.
 */

export interface MoveRequest {
  readonly studyInstanceUid: string;
  /** SERIES-level retrieve of these series only (one C-MOVE each); absent = the whole study. */
  readonly seriesInstanceUids?: readonly string[];
  /** Our AE title the SCP sends to (must be known to the SCP, with our host and port). */
  readonly moveDestination: string;
  /** Called after each pending response, for progress logs. */
  readonly onProgress?: (sub: SubOperations) => void;
}

export interface MoveResult {
  /** Final status: 0x0000, 0xB000 (or another warning), 0xFE00. */
  readonly status: number;
  readonly outcome: typeof QrOutcome.Success | typeof QrOutcome.Warning | typeof QrOutcome.Cancelled;
  readonly completed: number;
  readonly failed: number;
  readonly warning: number;
  /** Remaining in the final response (only non-zero after a cancel, PS3.4 C.4.2.1.4). */
  readonly remaining: number;
  /** Failed SOP Instance UID List (0008,0058) of the final response(s). */
  readonly failedSopInstanceUids: readonly string[];
  /** Pending responses seen (progress). */
  readonly pendingResponses: number;
}

/** One C-MOVE of one identifier on an open association. */
async function moveOne(a: QrAssociation, identifier: Identifier, req: MoveRequest): Promise<MoveResult> {
  const ctx = a.contextOf.get(QrSopClass.StudyRootMove);
  if (!ctx) throw new FindProtocolError('Study Root Query/Retrieve – MOVE presentation context not accepted');
  const messageId = a.nextMessageId();
  let last: SubOperations = {};
  let pendingResponses = 0;
  let finalStatus = -1;
  let comment: string | undefined;
  let failedUids: string[] = [];
  await a.assoc.requestStream(
    ctx.id,
    encodeQueryRetrieveRq({
      commandField: CommandField.CMoveRq,
      messageId,
      affectedSopClassUid: QrSopClass.StudyRootMove,
      moveDestination: req.moveDestination,
    }),
    encodeIdentifier(identifier, ctx.transferSyntax),
    (m) => {
      const rsp = parseResponse(m.command);
      if (rsp.commandField !== CommandField.CMoveRsp || rsp.messageIdBeingRespondedTo !== messageId)
        throw new FindProtocolError(
          `unexpected response 0x${rsp.commandField.toString(16)} to C-MOVE-RQ ${messageId} (for ${rsp.messageIdBeingRespondedTo})`,
        );
      const sub = subOperationsOf(m.command);
      last = { ...last, ...sub };
      if (classifyQrStatus(rsp.status).outcome === QrOutcome.Pending) {
        pendingResponses++;
        req.onProgress?.(last);
        return 'more';
      }
      finalStatus = rsp.status;
      comment = rsp.errorComment;
      if (m.dataSet) {
        // A failing or warning final response may list the instances it could not send (PS3.4 C.4.2.1.3.1).
        try {
          const v = decodeIdentifier(m.dataSet, ctx.transferSyntax).values.FailedSOPInstanceUIDList ?? '';
          failedUids = v
            .split('\\')
            .map((s) => s.trim())
            .filter(isValidUid);
        } catch {
          // An unreadable list costs only the UIDs; the counts stand.
        }
      }
      return 'done';
    },
  );
  const c = classifyQrStatus(finalStatus);
  if (c.outcome !== QrOutcome.Success && c.outcome !== QrOutcome.Warning && c.outcome !== QrOutcome.Cancelled)
    throw new QueryRetrieveError(QrOperation.Move, finalStatus, comment);
  return {
    status: finalStatus,
    outcome: c.outcome,
    completed: last.completed ?? 0,
    failed: last.failed ?? 0,
    warning: last.warning ?? 0,
    remaining: last.remaining ?? 0,
    failedSopInstanceUids: failedUids,
    pendingResponses,
  };
}

/**
 * C-MOVE a study (STUDY level), or only some of its series (SERIES level, one request per series,
 * since not every SCP takes a list of UIDs), to `moveDestination`; the results are summed.
 */
export async function cMove(a: QrAssociation, req: MoveRequest): Promise<MoveResult> {
  if (!req.seriesInstanceUids)
    return moveOne(a, { QueryRetrieveLevel: QueryLevel.Study, StudyInstanceUID: req.studyInstanceUid }, req);
  let sum: MoveResult = {
    status: 0,
    outcome: QrOutcome.Success,
    completed: 0,
    failed: 0,
    warning: 0,
    remaining: 0,
    failedSopInstanceUids: [],
    pendingResponses: 0,
  };
  for (const series of req.seriesInstanceUids) {
    const r = await moveOne(
      a,
      { QueryRetrieveLevel: QueryLevel.Series, StudyInstanceUID: req.studyInstanceUid, SeriesInstanceUID: series },
      req,
    );
    sum = {
      status: sum.outcome === QrOutcome.Success ? r.status : sum.status,
      outcome: sum.outcome === QrOutcome.Success ? r.outcome : sum.outcome,
      completed: sum.completed + r.completed,
      failed: sum.failed + r.failed,
      warning: sum.warning + r.warning,
      remaining: sum.remaining + r.remaining,
      failedSopInstanceUids: [...sum.failedSopInstanceUids, ...r.failedSopInstanceUids],
      pendingResponses: sum.pendingResponses + r.pendingResponses,
    };
    if (r.outcome === QrOutcome.Cancelled) break;
  }
  return sum;
}

/** Associate, C-MOVE, release. */
export function move(peer: QrPeer, req: MoveRequest): Promise<MoveResult> {
  return withQrAssociation(peer, [QrSopClass.StudyRootMove], (a) => cMove(a, req));
}
