import {
  CommandField,
  CommandTag,
  DimseCommandError,
  DimseStatus,
  decodeCommandSet,
  encodeCEchoRq,
  encodeCommandSet,
  encodeResponse,
  parseRequest,
  parseResponse,
} from '../../../src/dimse/dimse-command.js';

/** A C-STORE-RQ as DCMTK storescu sends it (PS3.7 Table 9.3-1), built element by element. */
function storeRq(): Buffer {
  return encodeCommandSet(
    new Map<number, number | string>([
      [CommandTag.AffectedSopClassUid, '1.2.840.10008.5.1.4.1.1.2'],
      [CommandTag.CommandField, CommandField.CStoreRq],
      [CommandTag.MessageId, 7],
      [CommandTag.Priority, 0],
      [CommandTag.CommandDataSetType, 0x0000],
      [CommandTag.AffectedSopInstanceUid, '1.2.3.4.5'],
    ]),
  );
}

describe('DIMSE command set (PS3.7 §9.3, Implicit VR LE group 0000)', () => {
  it('leads with Command Group Length counting the bytes after it, elements in tag order', () => {
    const b = storeRq();
    expect(b.readUInt16LE(0)).toBe(0x0000);
    expect(b.readUInt16LE(2)).toBe(0x0000);
    expect(b.readUInt32LE(4)).toBe(4);
    expect(b.readUInt32LE(8)).toBe(b.length - 12);
    expect(b.readUInt16LE(14)).toBe(0x0002); // Affected SOP Class UID next
    // UIDs padded to even length with NUL (PS3.5 §6.2): "1.2.3.4.5" → 10 bytes.
    const c = decodeCommandSet(b);
    expect(c.get(CommandTag.AffectedSopInstanceUid)).toBe('1.2.3.4.5');
    expect(parseRequest(c)).toEqual({
      commandField: CommandField.CStoreRq,
      messageId: 7,
      affectedSopClassUid: '1.2.840.10008.5.1.4.1.1.2',
      affectedSopInstanceUid: '1.2.3.4.5',
      priority: 0,
    });
  });

  it('encodes C-STORE-RSP and C-ECHO-RSP with no data set (0101) and the status', () => {
    const rsp = encodeResponse({
      commandField: CommandField.CStoreRsp,
      messageIdBeingRespondedTo: 7,
      status: DimseStatus.DataSetDoesNotMatchSopClass,
      affectedSopClassUid: '1.2.840.10008.5.1.4.1.1.2',
      affectedSopInstanceUid: '1.2.3.4.5',
    });
    const c = decodeCommandSet(rsp);
    expect(c.get(CommandTag.CommandDataSetType)).toBe(0x0101);
    expect(parseResponse(c)).toEqual({
      commandField: 0x8001,
      messageIdBeingRespondedTo: 7,
      status: 0xa900,
      affectedSopClassUid: '1.2.840.10008.5.1.4.1.1.2',
      affectedSopInstanceUid: '1.2.3.4.5',
    });
    const echo = decodeCommandSet(encodeCEchoRq(1, '1.2.840.10008.1.1'));
    expect(parseRequest(echo)).toEqual({
      commandField: 0x0030,
      messageId: 1,
      affectedSopClassUid: '1.2.840.10008.1.1',
    });
  });

  it('refuses malformed command sets', () => {
    const b = storeRq();
    expect(() => decodeCommandSet(b.subarray(0, b.length - 3))).toThrow(DimseCommandError);
    const other = Buffer.from(b);
    other.writeUInt16LE(0x0008, 12); // an element of group 0008 inside a command set
    expect(() => decodeCommandSet(other)).toThrow(/group/);
    const noStoreUid = encodeCommandSet(
      new Map<number, number | string>([
        [CommandTag.CommandField, CommandField.CStoreRq],
        [CommandTag.MessageId, 1],
        [CommandTag.CommandDataSetType, 0],
      ]),
    );
    expect(() => parseRequest(decodeCommandSet(noStoreUid))).toThrow(/Affected SOP/);
    const find = encodeCommandSet(
      new Map<number, number | string>([
        [CommandTag.CommandField, CommandField.CFindRq],
        [CommandTag.MessageId, 1],
      ]),
    );
    expect(() => parseRequest(decodeCommandSet(find))).toThrow(/unsupported command field 0x0020/);
  });
});
