import { loadConfig } from '../../../src/config.js';
import { parsePart10 } from '../../../src/dicom/dataset.js';
import { buildDraftSr } from '../../../src/dicom/sr/draft-sr.js';
import { readSr } from '../../../src/dicom/sr/reader.js';
import { SopClass, TransferSyntax } from '../../../src/dicom/uids.js';
import { decodeCommandSet, encodeCStoreRq, parseRequest } from '../../../src/dimse/dimse-command.js';
import { decodePdu, encodePdu, fragmentPData, PDV_HEADER_BYTES, PduType } from '../../../src/dimse/pdu.js';
import { AssociationFailure, DimseAssociationError } from '../../../src/dimse/requestor.js';
import { fileMetaInformation } from '../../../src/dimse/storage-scp.js';
import {
  classifyStoreStatus,
  convertDataSet,
  explicitToImplicit,
  formatStatus,
  isStored,
  StoreOutcome,
  splitPart10,
  storePresentationContexts,
} from '../../../src/dimse/store-scu.js';
import { ConfigError, ErrorCode } from '../../../src/errors.js';
import { paramsFor, sourceHeader } from '../dicom/sr/sr-fixtures.js';

/** [REQ-DIMSE-STORE-SCU] (issue 11) The pure parts of the C-STORE SCU: PS3.4 B.2.3 statuses, PS3.8 fragmentation. */

describe('classifyStoreStatus (PS3.4 B.2.3, PS3.7 Annex C)', () => {
  it.each([
    [0x0000, StoreOutcome.Success],
    [0x0001, StoreOutcome.Warning],
    [0xb000, StoreOutcome.Warning],
    [0xb006, StoreOutcome.Warning],
    [0xb007, StoreOutcome.Warning],
    [0xa700, StoreOutcome.Transient],
    [0xa7ff, StoreOutcome.Transient],
    [0x0213, StoreOutcome.Transient],
    [0xa900, StoreOutcome.Permanent],
    [0xa9ab, StoreOutcome.Permanent],
    [0xc000, StoreOutcome.Permanent],
    [0xcfff, StoreOutcome.Permanent],
    [0x0122, StoreOutcome.Permanent],
    [0x0124, StoreOutcome.Permanent],
    [0x0110, StoreOutcome.Permanent],
    [0x0111, StoreOutcome.Permanent],
    [0x0211, StoreOutcome.Permanent],
    [0xff00, StoreOutcome.Permanent],
    [0xfe00, StoreOutcome.Permanent],
    [0x1234, StoreOutcome.Permanent],
  ])('%i → %s', (status, outcome) => {
    expect(classifyStoreStatus(status).outcome).toBe(outcome);
  });

  it('names statuses as the standard does, and only success and warnings count as stored', () => {
    expect(classifyStoreStatus(0xa701).meaning).toBe('Refused: Out of Resources');
    expect(classifyStoreStatus(0xb000).meaning).toBe('Coercion of Data Elements');
    expect(formatStatus(0xa700)).toBe('0xA700');
    expect(formatStatus(0x122)).toBe('0x0122');
    expect([StoreOutcome.Success, StoreOutcome.Warning].every(isStored)).toBe(true);
    expect([StoreOutcome.Transient, StoreOutcome.Permanent].some(isStored)).toBe(false);
  });
});

describe('fragmentPData (PS3.8 §9.3.5, D.1)', () => {
  it('keeps every P-DATA-TF within the peer maximum, sets the last bit only on the last PDV, and loses no byte', () => {
    const bytes = Buffer.from(Array.from({ length: 10_000 }, (_, i) => i % 251));
    for (const max of [4096, 4097, 16_384, 10_006, 10_005]) {
      const pdus = fragmentPData(3, false, bytes, max);
      expect(pdus.length).toBe(Math.ceil(bytes.length / (max - PDV_HEADER_BYTES)));
      const back: Buffer[] = [];
      pdus.forEach((p, i) => {
        const wire = encodePdu(p);
        // The PDU-length field (bytes 2–5) is the variable field that D.1 bounds.
        expect(wire.readUInt32BE(2)).toBeLessThanOrEqual(max);
        const d = decodePdu(wire);
        if (d.type !== PduType.PData) throw new Error('not P-DATA');
        expect(d.pdvs).toHaveLength(1);
        expect(d.pdvs[0]).toMatchObject({ contextId: 3, command: false, last: i === pdus.length - 1 });
        back.push(d.pdvs[0]?.fragment as Buffer);
      });
      expect(Buffer.concat(back).equals(bytes)).toBe(true);
    }
  });

  it('uses the fallback size when the peer sets no limit (0), and sends one empty last PDV for an empty value', () => {
    expect(fragmentPData(1, true, Buffer.alloc(100), 0, 56)).toHaveLength(2);
    expect(fragmentPData(1, true, Buffer.alloc(100), 0)).toHaveLength(1);
    const empty = fragmentPData(1, true, Buffer.alloc(0), 4096);
    expect(empty).toHaveLength(1);
    expect(empty[0]?.pdvs[0]).toMatchObject({ last: true, command: true });
  });
});

describe('C-STORE-RQ, contexts and Part 10 handling', () => {
  const sr = buildDraftSr({ ...paramsFor([sourceHeader('CT_small.dcm')], ['finding']), profile: 'report' });

  it('encodes a C-STORE-RQ our own SCP parses back (PS3.7 Table 9.3-1)', () => {
    const cmd = encodeCStoreRq({ messageId: 7, affectedSopClassUid: '1.2.3', affectedSopInstanceUid: '1.2.3.4' });
    expect(parseRequest(decodeCommandSet(cmd))).toMatchObject({
      messageId: 7,
      affectedSopClassUid: '1.2.3',
      affectedSopInstanceUid: '1.2.3.4',
      priority: 0,
    });
  });

  it('proposes one context per (SOP class, transfer syntax): the own syntax, then Implicit VR LE; odd IDs', () => {
    const srInst = splitPart10(sr.part10);
    const pdfLike = { ...srInst, sopClassUid: SopClass.EncapsulatedPdfStorage };
    expect(storePresentationContexts([srInst, pdfLike, srInst])).toEqual([
      { id: 1, abstractSyntax: srInst.sopClassUid, transferSyntaxes: [TransferSyntax.ExplicitVrLittleEndian] },
      { id: 3, abstractSyntax: srInst.sopClassUid, transferSyntaxes: [TransferSyntax.ImplicitVrLittleEndian] },
      {
        id: 5,
        abstractSyntax: SopClass.EncapsulatedPdfStorage,
        transferSyntaxes: [TransferSyntax.ExplicitVrLittleEndian],
      },
      {
        id: 7,
        abstractSyntax: SopClass.EncapsulatedPdfStorage,
        transferSyntaxes: [TransferSyntax.ImplicitVrLittleEndian],
      },
    ]);
  });

  it('splits the File Meta off, and converts Explicit → Implicit VR LE keeping every value, UTF-8 text included', () => {
    const text = 'café Straße 日本語 😀 — end';
    const utf = buildDraftSr({ ...paramsFor([sourceHeader('CT_small.dcm')], [text]), profile: 'air' });
    const inst = splitPart10(utf.part10);
    expect(inst).toMatchObject({
      sopInstanceUid: utf.sopInstanceUid,
      transferSyntaxUid: TransferSyntax.ExplicitVrLittleEndian,
    });
    // The data set starts with group 0008, not 0002.
    expect(inst.dataSet.readUInt16LE(0)).toBe(0x0008);
    const implicit = convertDataSet(inst, TransferSyntax.ImplicitVrLittleEndian);
    expect(implicit.transferSyntaxUid).toBe(TransferSyntax.ImplicitVrLittleEndian);
    // Implicit VR: a 32-bit length right after the first tag, no VR letters.
    expect(implicit.dataSet.toString('latin1', 4, 6)).not.toMatch(/^[A-Z]{2}$/);
    // Read back as a Part 10 file in Implicit VR LE: the same data set, the same SR, text intact.
    const back = new Uint8Array(
      Buffer.concat([
        fileMetaInformation(implicit.sopClassUid, implicit.sopInstanceUid, implicit.transferSyntaxUid, ''),
        implicit.dataSet,
      ]),
    );
    expect(parsePart10(back).transferSyntaxUid).toBe(TransferSyntax.ImplicitVrLittleEndian);
    expect(parsePart10(back).dataset).toEqual(parsePart10(utf.part10).dataset);
    expect(JSON.stringify(readSr(back))).toContain(text);
    expect({ ...readSr(back), transferSyntaxUid: 'x' }).toEqual({ ...readSr(utf.part10), transferSyntaxUid: 'x' });
    expect(() => convertDataSet(implicit, TransferSyntax.ExplicitVrLittleEndian)).toThrow(/cannot convert/);
    expect(() => splitPart10(new Uint8Array(200))).toThrow(/not a Part 10 file/);
    expect(sr.sopInstanceUid).toBeTruthy();
  });

  it('rewrites defined- and undefined-length sequences and items, recomputing defined lengths', () => {
    const short = (g: number, e: number, vr: string, v: Buffer): Buffer => {
      const h = Buffer.alloc(8);
      h.writeUInt16LE(g, 0);
      h.writeUInt16LE(e, 2);
      h.write(vr, 4, 'latin1');
      h.writeUInt16LE(v.length, 6);
      return Buffer.concat([h, v]);
    };
    const long = (g: number, e: number, vr: string, v: Buffer, len = v.length): Buffer => {
      const h = Buffer.alloc(12);
      h.writeUInt16LE(g, 0);
      h.writeUInt16LE(e, 2);
      h.write(vr, 4, 'latin1');
      h.writeUInt32LE(len, 8);
      return Buffer.concat([h, v]);
    };
    const tag = (g: number, e: number, len: number): Buffer => {
      const h = Buffer.alloc(8);
      h.writeUInt16LE(g, 0);
      h.writeUInt16LE(e, 2);
      h.writeUInt32LE(len, 4);
      return h;
    };
    const uid = (u: string) => Buffer.from(u.length % 2 ? `${u}\0` : u, 'latin1');
    const text = Buffer.from('Straße ✓ ', 'utf8');
    const innerItem = Buffer.concat([short(0x0008, 0x1150, 'UI', uid('1.2.3')), long(0x0040, 0xa160, 'UT', text)]);
    const explicit = Buffer.concat([
      short(0x0008, 0x0005, 'CS', Buffer.from('ISO_IR 192', 'latin1')),
      short(0x0008, 0x0016, 'UI', uid('1.2.840.10008.5.1.4.1.1.88.33')),
      short(0x0008, 0x0018, 'UI', uid('1.2.3.4')),
      // Undefined-length sequence with an undefined-length item.
      long(0x0008, 0x1115, 'SQ', Buffer.alloc(0), 0xffffffff),
      tag(0xfffe, 0xe000, 0xffffffff),
      innerItem,
      tag(0xfffe, 0xe00d, 0),
      tag(0xfffe, 0xe0dd, 0),
      // Defined-length sequence with a defined-length item holding a long-VR element.
      long(0x0040, 0xa730, 'SQ', Buffer.concat([tag(0xfffe, 0xe000, innerItem.length), innerItem])),
    ]);
    const implicit = explicitToImplicit(explicit);
    // Every long-VR header lost 4 bytes: two UT (inside the two items) and the defined-length SQ.
    expect(explicit.length - implicit.length).toBe(4 * 4);
    const wrap = (ts: string, ds: Buffer) =>
      new Uint8Array(Buffer.concat([fileMetaInformation('1.2.840.10008.5.1.4.1.1.88.33', '1.2.3.4', ts, ''), ds]));
    const a = parsePart10(wrap(TransferSyntax.ExplicitVrLittleEndian, explicit)).dataset;
    const b = parsePart10(wrap(TransferSyntax.ImplicitVrLittleEndian, implicit)).dataset;
    expect(b).toEqual(a);
    expect(JSON.stringify(b)).toContain('Straße ✓');
    expect(() => explicitToImplicit(explicit.subarray(0, explicit.length - 3))).toThrow(/cannot convert/);
  });

  it('association errors: a permanent rejection is pacs-rejected, everything else transient', () => {
    expect(new DimseAssociationError(AssociationFailure.Rejected, 'x', { result: 1, source: 1, reason: 7 }).code).toBe(
      ErrorCode.PacsRejected,
    );
    expect(new DimseAssociationError(AssociationFailure.Rejected, 'x', { result: 2, source: 3, reason: 2 }).code).toBe(
      ErrorCode.PacsUnavailable,
    );
    for (const f of [
      AssociationFailure.ConnectFailed,
      AssociationFailure.ConnectTimeout,
      AssociationFailure.ArtimTimeout,
      AssociationFailure.ResponseTimeout,
      AssociationFailure.Aborted,
      AssociationFailure.Closed,
    ])
      expect(new DimseAssociationError(f, 'x').code).toBe(ErrorCode.PacsUnavailable);
  });
});

describe('config: destinations of type dimse', () => {
  const base = { defaultDestination: 'pacs' };
  it('reads host, port, AE titles and timeouts with defaults', () => {
    const cfg = loadConfig({
      env: {},
      overrides: {
        ...base,
        destinations: [{ name: 'pacs', type: 'dimse', host: 'pacs.example', port: 104, calledAeTitle: 'MAIN_PACS' }],
      },
    });
    expect(cfg.destinations[0]).toMatchObject({
      type: 'dimse',
      host: 'pacs.example',
      port: 104,
      calledAeTitle: 'MAIN_PACS',
      callingAeTitle: 'RADSCRIBE',
      connectTimeoutMs: 10_000,
      associationTimeoutMs: 30_000,
      responseTimeoutMs: 60_000,
    });
  });

  it('validates AE titles (PS3.5) and names keys used with the wrong type', () => {
    let problems: readonly string[] = [];
    try {
      loadConfig({
        env: {},
        overrides: {
          ...base,
          destinations: [
            {
              name: 'pacs',
              type: 'dimse',
              host: 'h',
              port: 104,
              calledAeTitle: 'MUCH_TOO_LONG_AE_TITLE',
              callingAeTitle: 'BAD\\AE',
            },
            { name: 'o', type: 'folder', path: '/tmp/o', calledAeTitle: 'X' },
          ],
        },
      });
    } catch (err) {
      expect(err).toBeInstanceOf(ConfigError);
      problems = (err as ConfigError).problems;
    }
    expect(problems).toEqual([
      'destinations[0].calledAeTitle: not a valid AE title: must be at most 16 characters',
      'destinations[0].callingAeTitle: not a valid AE title: must not contain a backslash',
      'destinations[1].calledAeTitle: only used with type dimse',
    ]);
  });
});
