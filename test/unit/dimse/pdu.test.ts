import {
  AbortReason,
  type AssociateRq,
  DICOM_APPLICATION_CONTEXT,
  decodePdu,
  encodePdu,
  PduError,
  PduFailure,
  PduReader,
  PduType,
} from '../../../src/dimse/pdu.js';

const RQ: AssociateRq = {
  type: PduType.AssociateRq,
  protocolVersion: 1,
  calledAeTitle: 'RADSCRIBE',
  callingAeTitle: 'CT01',
  applicationContext: DICOM_APPLICATION_CONTEXT,
  presentationContexts: [
    { id: 1, abstractSyntax: '1.2.840.10008.1.1', transferSyntaxes: ['1.2.840.10008.1.2'] },
    {
      id: 3,
      abstractSyntax: '1.2.840.10008.5.1.4.1.1.2',
      transferSyntaxes: ['1.2.840.10008.1.2.4.90', '1.2.840.10008.1.2.1'],
    },
  ],
  userInformation: { maxPduLength: 16384, implementationClassUid: '1.2.3.4', implementationVersionName: 'TEST_1' },
};

function failureOf(fn: () => unknown): PduError {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(PduError);
    return err as PduError;
  }
  throw new Error('expected a PduError');
}

describe('PDU codec (PS3.8 §9.3)', () => {
  it('round-trips an A-ASSOCIATE-RQ, item by item as PS3.8 Table 9-11 lays it out', () => {
    const b = encodePdu(RQ);
    expect(b.readUInt8(0)).toBe(0x01);
    expect(b.readUInt32BE(2)).toBe(b.length - 6);
    expect(b.readUInt16BE(6)).toBe(1); // protocol version
    expect(b.toString('latin1', 10, 26)).toBe('RADSCRIBE       ');
    expect(b.toString('latin1', 26, 42)).toBe('CT01            ');
    expect(b.readUInt8(74)).toBe(0x10); // application context item right after the 68-byte fixed part
    expect(decodePdu(b)).toEqual(RQ);
  });

  it('round-trips AC, RJ, P-DATA, release and abort', () => {
    const ac = {
      type: PduType.AssociateAc,
      protocolVersion: 1,
      calledAeTitle: 'RADSCRIBE',
      callingAeTitle: 'CT01',
      applicationContext: DICOM_APPLICATION_CONTEXT,
      presentationContexts: [{ id: 1, result: 0, transferSyntax: '1.2.840.10008.1.2' }],
      userInformation: { maxPduLength: 0, implementationClassUid: '1.2.3' },
    } as const;
    expect(decodePdu(encodePdu(ac))).toEqual(ac);
    const rj = { type: PduType.AssociateRj, result: 1, source: 1, reason: 7 } as const;
    expect(encodePdu(rj)).toEqual(Buffer.from([0x03, 0, 0, 0, 0, 4, 0, 1, 1, 7]));
    const pd = {
      type: PduType.PData,
      pdvs: [
        { contextId: 3, command: true, last: true, fragment: Buffer.from([1, 2, 3]) },
        { contextId: 3, command: false, last: false, fragment: Buffer.from([4]) },
      ],
    } as const;
    const pb = encodePdu(pd);
    expect(pb.readUInt32BE(6)).toBe(5); // PDV item length: context ID + header + 3 bytes
    expect(pb.readUInt8(11)).toBe(0x03); // command, last
    expect(decodePdu(pb)).toEqual(pd);
    expect(decodePdu(encodePdu({ type: PduType.ReleaseRq }))).toEqual({ type: PduType.ReleaseRq });
    expect(decodePdu(encodePdu({ type: PduType.Abort, source: 2, reason: 6 }))).toEqual({
      type: PduType.Abort,
      source: 2,
      reason: 6,
    });
  });

  it('refuses malformed PDUs with typed errors and the A-ABORT reason to send', () => {
    expect(failureOf(() => decodePdu(Buffer.from([0x09, 0, 0, 0, 0, 0]))).failure).toBe(PduFailure.UnknownType);
    const short = failureOf(() => decodePdu(Buffer.concat([Buffer.from([0x01, 0, 0, 0, 0, 10]), Buffer.alloc(10)])));
    expect(short.failure).toBe(PduFailure.Malformed);
    expect(short.abortReason).toBe(AbortReason.InvalidPduParameterValue);
    // An item that runs past the PDU.
    const b = encodePdu(RQ);
    b.writeUInt16BE(0xffff, 76);
    expect(failureOf(() => decodePdu(b)).message).toMatch(/runs past/);
    // An even presentation context ID (PS3.8 §9.3.2.2: odd 1-255).
    const even = decodePduWith({
      ...RQ,
      presentationContexts: [{ id: 2, abstractSyntax: '1.2', transferSyntaxes: ['1.2'] }],
    });
    expect(even.message).toMatch(/not odd/);
    // A PDV item whose length leaves no room for its header.
    const pd = Buffer.from([0x04, 0, 0, 0, 0, 6, 0, 0, 0, 1, 1, 3]);
    expect(failureOf(() => decodePdu(pd)).message).toMatch(/PDV item length/);
    // Release with a wrong length.
    expect(failureOf(() => decodePdu(Buffer.from([0x05, 0, 0, 0, 0, 2, 0, 0]))).failure).toBe(PduFailure.Malformed);
  });

  it('PduReader splits a byte stream at PDU boundaries, in any chunking', () => {
    const stream = Buffer.concat([encodePdu(RQ), encodePdu({ type: PduType.ReleaseRq })]);
    const r = new PduReader();
    const out: number[] = [];
    for (let i = 0; i < stream.length; i += 7) {
      r.push(stream.subarray(i, i + 7));
      for (let p = r.next(); p; p = r.next()) out.push(p.type);
    }
    expect(out).toEqual([PduType.AssociateRq, PduType.ReleaseRq]);
    expect(r.buffered).toBe(0);
  });

  it('PduReader refuses an over-long PDU from its header alone, before the body arrives', () => {
    const r = new PduReader({ maxPduLength: 1024, maxControlPduLength: 512 });
    r.push(Buffer.from([0x04, 0, 0, 0, 0x04, 0x01])); // P-DATA of 1025 bytes
    expect(failureOf(() => r.next()).failure).toBe(PduFailure.TooLong);
    const c = new PduReader({ maxPduLength: 1024, maxControlPduLength: 512 });
    c.push(Buffer.from([0x01, 0, 0x7f, 0xff, 0xff, 0xff]));
    expect(failureOf(() => c.next()).failure).toBe(PduFailure.TooLong);
    const u = new PduReader();
    u.push(Buffer.from([0x42, 0, 0, 0, 0, 0]));
    expect(failureOf(() => u.next()).abortReason).toBe(AbortReason.UnrecognizedPdu);
  });
});

function decodePduWith(rq: AssociateRq): PduError {
  try {
    decodePdu(encodePdu(rq));
  } catch (err) {
    return err as PduError;
  }
  throw new Error('expected a PduError');
}
