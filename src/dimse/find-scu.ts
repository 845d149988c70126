import { ErrorCode, RadScribeError } from '../errors.js';
import { CommandField, encodeCCancelRq, encodeQueryRetrieveRq, parseResponse } from './dimse-command.js';
import { decodeIdentifier, encodeIdentifier, type Identifier, IdentifierError } from './identifier.js';
import {
  type QrAssociation,
  type QrPeer,
  QrSopClass,
  type QueryLevel,
  withQrAssociation,
} from './query-retrieve-scu.js';
import { classifyQrStatus, QrOperation, QrOutcome, QueryRetrieveError } from './query-retrieve-status.js';
import { AssociationFailure, DimseAssociationError } from './requestor.js';

/**
 * C-FIND SCU (PS3.4 C.4.1, Study Root Query/Retrieve Information Model – FIND), STUDY and SERIES
 * levels (C.6.2.1). Each Pending response (0xFF00, 0xFF01) carries one match; the final response
 * says how the query ended. The number of matches kept is bounded: at `limit` matches, or when
 * `timeLimitMs` has passed, a C-CANCEL-RQ goes out (PS3.7 §9.1.2.1, §9.3.2.3) and the final
 * response (0xFE00 Cancel, or 0x0000 if the SCP had finished) is awaited; the result says it is
 * incomplete. Matches the SCP sends after the cancel are not kept.
 */

export const DEFAULT_FIND_LIMIT = 1000;
export const DEFAULT_FIND_TIME_LIMIT_MS = 120_000;

export interface FindRequest {
  readonly level: QueryLevel;
  /** Matching keys with their values, return keys with '' (PS3.4 C.2.2.1). QueryRetrieveLevel is set from `level`. */
  readonly keys: Identifier;
  /** Matches kept at most; the query is cancelled when one more arrives. */
  readonly limit?: number;
  /** Wall-clock bound on the whole query; cancelled when it passes. */
  readonly timeLimitMs?: number;
}

/** Why a query ended before the SCP's final answer of its own accord. */
export const FindIncomplete = { Limit: 'limit', TimeLimit: 'time-limit' } as const;
export type FindIncomplete = (typeof FindIncomplete)[keyof typeof FindIncomplete];

export interface FindResult {
  readonly matches: readonly Identifier[];
  /** Final response status (0x0000, or 0xFE00 after our cancel). */
  readonly status: number;
  /** Set when we cancelled: the SCP may hold more matches than `matches`. */
  readonly incomplete?: FindIncomplete;
  /** Pending responses with 0xFF01 (Optional Keys not supported, PS3.4 C.4.1.1.4). */
  readonly optionalKeysUnsupported: number;
  /** Some match text did not decode under its Specific Character Set. */
  readonly lossyText: boolean;
}

/** The SCP did not accept the FIND context, or answered something a C-FIND SCU cannot read. */
export class FindProtocolError extends RadScribeError {
  override name = 'FindProtocolError';
  constructor(message: string) {
    super(ErrorCode.PacsRejected, message);
  }
}

/** One C-FIND on an open association. */
export async function cFind(a: QrAssociation, req: FindRequest): Promise<FindResult> {
  const ctx = a.contextOf.get(QrSopClass.StudyRootFind);
  if (!ctx) throw new FindProtocolError('Study Root Query/Retrieve – FIND presentation context not accepted');
  const limit = req.limit ?? DEFAULT_FIND_LIMIT;
  const timeLimitMs = req.timeLimitMs ?? DEFAULT_FIND_TIME_LIMIT_MS;
  const messageId = a.nextMessageId();
  const identifier = encodeIdentifier(
    { ...req.keys, QueryRetrieveLevel: req.level },
    ctx.transferSyntax,
    a.peer.characterSet ? { characterSet: a.peer.characterSet } : {},
  );
  const matches: Identifier[] = [];
  let incomplete: FindIncomplete | undefined;
  let optionalKeysUnsupported = 0;
  let lossyText = false;
  let finalStatus = -1;
  let finalComment: string | undefined;
  const cancel = (why: FindIncomplete): void => {
    if (incomplete) return;
    incomplete = why;
    // Written while the request is outstanding; its answer is the final C-FIND-RSP.
    void a.assoc.sendCommand(ctx.id, encodeCCancelRq(messageId)).catch(() => undefined);
  };
  const timer = setTimeout(() => cancel(FindIncomplete.TimeLimit), timeLimitMs);
  try {
    await a.assoc.requestStream(
      ctx.id,
      encodeQueryRetrieveRq({
        commandField: CommandField.CFindRq,
        messageId,
        affectedSopClassUid: QrSopClass.StudyRootFind,
      }),
      identifier,
      (m) => {
        const rsp = parseResponse(m.command);
        if (rsp.commandField !== CommandField.CFindRsp || rsp.messageIdBeingRespondedTo !== messageId)
          throw new FindProtocolError(
            `unexpected response 0x${rsp.commandField.toString(16)} to C-FIND-RQ ${messageId} (for ${rsp.messageIdBeingRespondedTo})`,
          );
        const c = classifyQrStatus(rsp.status);
        if (c.outcome === QrOutcome.Pending) {
          if (rsp.status === 0xff01) optionalKeysUnsupported++;
          if (incomplete) return 'more';
          if (!m.dataSet) throw new FindProtocolError('C-FIND pending response without an identifier');
          if (matches.length >= limit) {
            cancel(FindIncomplete.Limit);
            return 'more';
          }
          let decoded: ReturnType<typeof decodeIdentifier>;
          try {
            decoded = decodeIdentifier(m.dataSet, ctx.transferSyntax);
          } catch (err: unknown) {
            if (err instanceof IdentifierError) throw new FindProtocolError(`unreadable C-FIND match: ${err.message}`);
            throw err;
          }
          lossyText ||= decoded.lossy;
          matches.push(decoded.values);
          return 'more';
        }
        finalStatus = rsp.status;
        finalComment = rsp.errorComment;
        return 'done';
      },
    );
  } catch (err: unknown) {
    // An SCP that closes instead of answering our cancel still leaves the matches we kept usable.
    if (incomplete && err instanceof DimseAssociationError && err.failure !== AssociationFailure.ProtocolError)
      return { matches, status: -1, incomplete, optionalKeysUnsupported, lossyText };
    throw err;
  } finally {
    clearTimeout(timer);
  }
  const c = classifyQrStatus(finalStatus);
  if (c.outcome === QrOutcome.Success || c.outcome === QrOutcome.Cancelled || c.outcome === QrOutcome.Warning) {
    if (c.outcome === QrOutcome.Cancelled && !incomplete) incomplete = FindIncomplete.Limit;
    return { matches, status: finalStatus, ...(incomplete ? { incomplete } : {}), optionalKeysUnsupported, lossyText };
  }
  throw new QueryRetrieveError(QrOperation.Find, finalStatus, finalComment);
}

/** Associate, run one C-FIND, release. */
export function find(peer: QrPeer, req: FindRequest): Promise<FindResult> {
  return withQrAssociation(peer, [QrSopClass.StudyRootFind], (a) => cFind(a, req));
}

/** The STUDY-level return keys RadScribe asks for (PS3.4 Table C.6-5). */
export const STUDY_RETURN_KEYS: Identifier = {
  StudyInstanceUID: '',
  StudyDate: '',
  StudyTime: '',
  AccessionNumber: '',
  ModalitiesInStudy: '',
  StudyDescription: '',
  PatientID: '',
  PatientName: '',
  NumberOfStudyRelatedSeries: '',
  NumberOfStudyRelatedInstances: '',
};

/** The SERIES-level return keys (PS3.4 Table C.6-6). */
export const SERIES_RETURN_KEYS: Identifier = {
  SeriesInstanceUID: '',
  Modality: '',
  SeriesNumber: '',
  SeriesDescription: '',
  NumberOfSeriesRelatedInstances: '',
};
