import {
  CommandField,
  CommandTag,
  decodeCommandSet,
  encodeCCancelRq,
  encodeCommandSet,
  encodeQueryRetrieveRq,
  subOperationsOf,
} from '../../../src/dimse/dimse-command.js';
import {
  classifyQrStatus,
  QrOperation,
  QrOutcome,
  QueryRetrieveError,
} from '../../../src/dimse/query-retrieve-status.js';
import { ErrorCode } from '../../../src/errors.js';

describe('Q/R status classification (PS3.4 C.4.1.1.4, C.4.2.1.5)', () => {
  it.each([
    [0x0000, QrOutcome.Success],
    [0xff00, QrOutcome.Pending],
    [0xff01, QrOutcome.Pending],
    [0xfe00, QrOutcome.Cancelled],
    [0xb000, QrOutcome.Warning],
    [0xb123, QrOutcome.Warning],
    [0xa700, QrOutcome.Transient],
    [0xa701, QrOutcome.Transient],
    [0xa702, QrOutcome.Transient],
    [0x0213, QrOutcome.Transient],
    [0xa801, QrOutcome.Permanent],
    [0xa900, QrOutcome.Permanent],
    [0xa9ff, QrOutcome.Permanent],
    [0xc000, QrOutcome.Permanent],
    [0xc512, QrOutcome.Permanent],
    [0x0122, QrOutcome.Permanent],
    [0x0110, QrOutcome.Permanent],
  ])('status %i → %s', (status, outcome) => {
    expect(classifyQrStatus(status).outcome).toBe(outcome);
  });

  it('QueryRetrieveError: transient statuses are pacs-unavailable, the rest pacs-rejected; the message names status and meaning', () => {
    const t = new QueryRetrieveError(QrOperation.Move, 0xa702);
    expect(t.code).toBe(ErrorCode.PacsUnavailable);
    const p = new QueryRetrieveError(QrOperation.Move, 0xa801, 'no such AE');
    expect(p.code).toBe(ErrorCode.PacsRejected);
    expect(p.message).toBe('C-MOVE failed: 0xA801 Move Destination unknown (no such AE)');
  });
});

describe('Q/R command sets (PS3.7 Tables 9.3-3, 9.3-5, 9.3-6)', () => {
  it('C-MOVE-RQ carries Move Destination and a data set; C-FIND-RQ has none; C-CANCEL-RQ names the request', () => {
    const m = decodeCommandSet(
      encodeQueryRetrieveRq({
        commandField: CommandField.CMoveRq,
        messageId: 7,
        affectedSopClassUid: '1.2.840.10008.5.1.4.1.2.2.2',
        moveDestination: 'RADSCRIBE',
      }),
    );
    expect(m.get(CommandTag.MoveDestination)).toBe('RADSCRIBE');
    expect(m.get(CommandTag.CommandDataSetType)).toBe(0x0000);
    expect(m.get(CommandTag.MessageId)).toBe(7);
    const f = decodeCommandSet(
      encodeQueryRetrieveRq({
        commandField: CommandField.CFindRq,
        messageId: 1,
        affectedSopClassUid: '1.2.840.10008.5.1.4.1.2.2.1',
      }),
    );
    expect(f.has(CommandTag.MoveDestination)).toBe(false);
    expect(() =>
      encodeQueryRetrieveRq({ commandField: CommandField.CMoveRq, messageId: 1, affectedSopClassUid: 'x' }),
    ).toThrow(/Move Destination/);
    const c = decodeCommandSet(encodeCCancelRq(7));
    expect([
      c.get(CommandTag.CommandField),
      c.get(CommandTag.MessageIdBeingRespondedTo),
      c.get(CommandTag.CommandDataSetType),
    ]).toEqual([0x0fff, 7, 0x0101]);
  });

  it('reads the sub-operation counts of a C-MOVE-RSP, each optional', () => {
    const rsp = decodeCommandSet(
      encodeCommandSet(
        new Map<number, number | string>([
          [CommandTag.CommandField, CommandField.CMoveRsp],
          [CommandTag.MessageIdBeingRespondedTo, 7],
          [CommandTag.CommandDataSetType, 0x0101],
          [CommandTag.Status, 0xff00],
          [CommandTag.NumberOfRemainingSuboperations, 3],
          [CommandTag.NumberOfCompletedSuboperations, 2],
          [CommandTag.NumberOfFailedSuboperations, 0],
        ]),
      ),
    );
    expect(subOperationsOf(rsp)).toEqual({ remaining: 3, completed: 2, failed: 0 });
  });
});
