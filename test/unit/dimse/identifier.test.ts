import { TransferSyntax } from '../../../src/dicom/uids.js';
import {
  characterSetFor,
  decodeIdentifier,
  EncodableCharacterSet,
  encodeIdentifier,
  IdentifierError,
  integerOf,
} from '../../../src/dimse/identifier.js';

const IMPLICIT = TransferSyntax.ImplicitVrLittleEndian;
const EXPLICIT = TransferSyntax.ExplicitVrLittleEndian;

/** Elements of an Implicit VR LE data set: [tag, value bytes]. */
function implicitElements(b: Buffer): Array<[number, Buffer]> {
  const out: Array<[number, Buffer]> = [];
  for (let off = 0; off < b.length; ) {
    const tag = ((b.readUInt16LE(off) << 16) | b.readUInt16LE(off + 2)) >>> 0;
    const len = b.readUInt32LE(off + 4);
    out.push([tag, b.subarray(off + 8, off + 8 + len)]);
    off += 8 + len;
  }
  return out;
}

describe('Q/R identifier encoding (PS3.4 C.4.1.1.3, PS3.5 §6.1, §7.1)', () => {
  it('ASCII only: no Specific Character Set; ascending tags; even lengths (UI padded with NUL, text with space)', () => {
    const b = encodeIdentifier(
      { StudyInstanceUID: '1.2.3', QueryRetrieveLevel: 'STUDY', PatientName: '', StudyDate: '20250101-' },
      IMPLICIT,
    );
    const els = implicitElements(b);
    expect(els.map(([t]) => t)).toEqual([0x00080020, 0x00080052, 0x00100010, 0x0020000d]);
    expect(els.map(([, v]) => v.toString('latin1'))).toEqual(['20250101-\u0020', 'STUDY ', '', '1.2.3\0']);
  });

  it('Latin-1 text: ISO_IR 100 first, the name in single bytes', () => {
    expect(characterSetFor({ PatientName: 'Müller^Jörg' })).toBe(EncodableCharacterSet.Latin1);
    const els = implicitElements(encodeIdentifier({ PatientName: 'Müller^Jörg' }, IMPLICIT));
    expect(els[0]).toEqual([0x00080005, Buffer.from('ISO_IR 100')]);
    expect(els[1]?.[1]).toEqual(Buffer.from('Müller^Jörg ', 'latin1'));
  });

  it('text beyond Latin-1: ISO_IR 192, UTF-8 bytes', () => {
    const els = implicitElements(encodeIdentifier({ PatientName: 'Wang^XiaoDong=王^小東' }, IMPLICIT));
    expect(els[0]?.[1].toString('latin1')).toBe('ISO_IR 192');
    expect(els[1]?.[1].toString('utf8').trimEnd()).toBe('Wang^XiaoDong=王^小東');
  });

  it('a configured character set is used when the text needs one; ISO_IR 100 refuses what it cannot hold', () => {
    const els = implicitElements(
      encodeIdentifier({ PatientName: 'Müller' }, IMPLICIT, { characterSet: EncodableCharacterSet.Utf8 }),
    );
    expect(els[0]?.[1].toString('latin1')).toBe('ISO_IR 192');
    expect(els[1]?.[1]).toEqual(Buffer.from('Müller ', 'utf8'));
    expect(() =>
      encodeIdentifier({ PatientName: '王' }, IMPLICIT, { characterSet: EncodableCharacterSet.Latin1 }),
    ).toThrow(IdentifierError);
  });

  it('refuses non-ASCII in default-repertoire VRs, control characters and unsupported syntaxes', () => {
    expect(() => encodeIdentifier({ StudyDate: '2025０101' }, IMPLICIT)).toThrow(/default repertoire/);
    expect(() => encodeIdentifier({ PatientID: 'a\nb' }, IMPLICIT)).toThrow(/control character/);
    expect(() => encodeIdentifier({ PatientID: 'x' }, TransferSyntax.JpegBaseline)).toThrow(/not supported/);
  });

  it('Explicit VR LE: VR written, 2-byte lengths for short VRs', () => {
    const b = encodeIdentifier({ Modality: 'CT' }, EXPLICIT);
    expect(b).toEqual(
      Buffer.concat([Buffer.from([0x08, 0x00, 0x60, 0x00]), Buffer.from('CS'), Buffer.from([2, 0]), Buffer.from('CT')]),
    );
  });

  it.each([IMPLICIT, EXPLICIT])('round trip in %s, text decoded under its character set', (ts) => {
    const values = {
      PatientName: 'Wang^XiaoDong=王^小東',
      StudyInstanceUID: '1.2.840.1',
      NumberOfStudyRelatedInstances: '12',
      ModalitiesInStudy: 'CT\\MR',
    };
    const d = decodeIdentifier(encodeIdentifier(values, ts), ts);
    expect(d.values).toEqual({ ...values, SpecificCharacterSet: 'ISO_IR 192' });
    expect(d.lossy).toBe(false);
  });

  it('decodes ISO 2022 Japanese an SCP sends, and skips sequences of undefined length', () => {
    // (0008,0005) "\ISO 2022 IR 87", a sequence (0008,1110) of undefined length with one item, then PN.
    const el = (tag: number, v: Buffer): Buffer => {
      const h = Buffer.alloc(8);
      h.writeUInt16LE(tag >>> 16, 0);
      h.writeUInt16LE(tag & 0xffff, 2);
      h.writeUInt32LE(v.length, 4);
      return Buffer.concat([h, v]);
    };
    const undef = (tag: number): Buffer => {
      const h = Buffer.alloc(8);
      h.writeUInt16LE(tag >>> 16, 0);
      h.writeUInt16LE(tag & 0xffff, 2);
      h.writeUInt32LE(0xffffffff, 4);
      return h;
    };
    const pn = Buffer.concat([
      Buffer.from('Yamada^Tarou='),
      Buffer.from([0x1b, 0x24, 0x42, 0x3b, 0x33, 0x45, 0x44, 0x1b, 0x28, 0x42]),
    ]);
    const b = Buffer.concat([
      el(0x00080005, Buffer.from('\\ISO 2022 IR 87 ')),
      undef(0x00081110),
      undef(0xfffee000),
      el(0x00081150, Buffer.from('1.2\0')),
      el(0xfffee00d, Buffer.alloc(0)),
      el(0xfffee0dd, Buffer.alloc(0)),
      el(0x00100010, pn),
    ]);
    const d = decodeIdentifier(b, IMPLICIT);
    expect(d.values.PatientName).toBe('Yamada^Tarou=山田');
  });

  it('refuses truncated answers', () => {
    const b = encodeIdentifier({ PatientID: 'ABCDEF' }, IMPLICIT);
    expect(() => decodeIdentifier(b.subarray(0, b.length - 2), IMPLICIT)).toThrow(IdentifierError);
  });

  it('integerOf reads IS values', () => {
    expect([integerOf(' 12 '), integerOf(''), integerOf(undefined), integerOf('1.5'), integerOf('-1')]).toEqual([
      12,
      null,
      null,
      null,
      null,
    ]);
  });
});
