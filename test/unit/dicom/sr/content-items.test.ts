import { type Code, Codes, code, codeEquals, formatCode } from '../../../../src/dicom/sr/coding.js';
import {
  CodeContentItem,
  ContainerContentItem,
  ImageContentItem,
  RelationshipType,
  sanitizeUnlimitedText,
  TextContentItem,
  UidRefContentItem,
} from '../../../../src/dicom/sr/content-items.js';
import { firstForbiddenUtIndex, isShortOrLongString, replaceForbiddenUt } from '../../../../src/dicom/sr/vr.js';
import { SrValidationError } from '../../../../src/errors.js';

const CT = '1.2.840.10008.5.1.4.1.1.2';

describe('code()', () => {
  it('builds a frozen triple and compares by value + scheme', () => {
    const c = code('59776-5', 'LN', 'Findings');
    expect(Object.isFrozen(c)).toBe(true);
    expect(codeEquals(c, Codes.Findings)).toBe(true);
    expect(codeEquals(c, code('59776-5', 'DCM', 'Findings'))).toBe(false);
    expect(formatCode(c)).toBe('(59776-5, LN, "Findings")');
  });
  it.each([
    ['value', () => code('', 'DCM', 'x')],
    ['scheme', () => code('1', '', 'x')],
    ['meaning', () => code('1', 'DCM', ' ')],
    ['meaning', () => code('1', 'DCM', 'x'.repeat(65))],
    ['scheme', () => code('1', 'A\\B', 'x')],
    ['schemeVersion', () => code('1', 'DCM', 'x', '')],
  ])('rejects a bad %s', (field, make) => {
    expect(make).toThrow(SrValidationError);
    expect(make).toThrow(field);
  });
  it('uses SCT, never the retired SRT, in the codes we emit', () => {
    const schemes = Object.values(Codes).map((c: Code) => c.scheme);
    expect(schemes).not.toContain('SRT');
  });
});

describe('TextContentItem', () => {
  it('serialises Text Value, concept name and relationship', () => {
    const t = new TextContentItem({
      name: Codes.Finding,
      value: 'Ödem 日本語 😀',
      relationshipType: RelationshipType.CONTAINS,
    });
    expect(t.toDataset()).toEqual({
      RelationshipType: 'CONTAINS',
      ValueType: 'TEXT',
      ConceptNameCodeSequence: [{ CodeValue: '121071', CodingSchemeDesignator: 'DCM', CodeMeaning: 'Finding' }],
      TextValue: 'Ödem 日本語 😀',
    });
  });
  it('keeps CR, LF, TAB and FF, drops trailing padding', () => {
    expect(new TextContentItem({ name: Codes.Finding, value: 'a\r\nb\tc\fd  \n' }).value).toBe('a\r\nb\tc\fd');
  });
  it.each([
    ['empty', ''],
    ['blank', '   \n'],
    ['NUL', 'a\u0000b'],
    ['ESC', 'a\u001bb'],
    ['C1', 'a\u0085b'],
    ['DEL', 'a\u007fb'],
    ['lone surrogate', 'a\ud800b'],
  ])('rejects %s text', (_label, value) => {
    expect(() => new TextContentItem({ name: Codes.Finding, value })).toThrow(SrValidationError);
  });
  it('rejects a non-string value and a missing name', () => {
    expect(() => new TextContentItem({ name: Codes.Finding, value: 42 as unknown as string })).toThrow(
      /value must be a string/,
    );
    expect(() => new TextContentItem({ name: undefined as unknown as Code, value: 'x' })).toThrow(/name/);
  });
  it('sanitizeUnlimitedText replaces forbidden characters with U+FFFD and keeps the rest', () => {
    const s = sanitizeUnlimitedText('a\u0000b\u001bc\u0085d\ud800e😀\r\n  ');
    expect(s).toBe('a\ufffdb\ufffdc\ufffdd\ufffde😀');
    expect(() => new TextContentItem({ name: Codes.Finding, value: s })).not.toThrow();
  });
});

describe('CodeContentItem / UidRefContentItem', () => {
  it('serialises the Concept Code Sequence', () => {
    const c = new CodeContentItem({
      name: Codes.ObserverType,
      value: Codes.Device,
      relationshipType: RelationshipType.HAS_OBS_CONTEXT,
    });
    expect(c.toDataset().ConceptCodeSequence).toEqual([
      { CodeValue: '121007', CodingSchemeDesignator: 'DCM', CodeMeaning: 'Device' },
    ]);
  });
  it('rejects an incomplete code value', () => {
    expect(
      () => new CodeContentItem({ name: Codes.ObserverType, value: { value: '121007', scheme: 'DCM' } as Code }),
    ).toThrow(/CodeContentItem value: code meaning/);
  });
  it('writes Long Code Value for values over 16 characters', () => {
    const c = new CodeContentItem({ name: Codes.ObserverType, value: code('urn-like-long-code-value', '99X', 'Long') });
    expect((c.toDataset().ConceptCodeSequence as Array<Record<string, unknown>>)[0]).toMatchObject({
      LongCodeValue: 'urn-like-long-code-value',
    });
  });
  it('UIDREF rejects invalid UIDs', () => {
    expect(new UidRefContentItem({ name: Codes.DeviceObserverUid, value: '2.25.1' }).toDataset().UID).toBe('2.25.1');
    for (const bad of ['', '1.02', '1..2', 'a.b', `1.${'2'.repeat(64)}`]) {
      expect(() => new UidRefContentItem({ name: Codes.DeviceObserverUid, value: bad })).toThrow(
        /UidRefContentItem value/,
      );
    }
  });
});

describe('ImageContentItem', () => {
  it('serialises the Referenced SOP Sequence with frames', () => {
    const i = new ImageContentItem({
      relationshipType: RelationshipType.INFERRED_FROM,
      referencedSopClassUid: CT,
      referencedSopInstanceUid: '1.2.3',
      frameNumbers: [2, 5],
    });
    expect(i.name).toBeUndefined();
    expect(i.toDataset()).toEqual({
      RelationshipType: 'INFERRED FROM',
      ValueType: 'IMAGE',
      ReferencedSOPSequence: [
        { ReferencedSOPClassUID: CT, ReferencedSOPInstanceUID: '1.2.3', ReferencedFrameNumber: [2, 5] },
      ],
    });
  });
  it.each([
    ['referencedSopClassUid', { referencedSopClassUid: 'x', referencedSopInstanceUid: '1.2' }],
    ['referencedSopInstanceUid', { referencedSopClassUid: CT, referencedSopInstanceUid: '' }],
    ['frameNumbers', { referencedSopClassUid: CT, referencedSopInstanceUid: '1.2', frameNumbers: [0] }],
    ['frameNumbers', { referencedSopClassUid: CT, referencedSopInstanceUid: '1.2', frameNumbers: [1.5] }],
  ])('rejects a bad %s', (field, opts) => {
    expect(() => new ImageContentItem(opts)).toThrow(SrValidationError);
    expect(() => new ImageContentItem(opts)).toThrow(field);
  });
});

describe('ContainerContentItem', () => {
  const child = new TextContentItem({ name: Codes.Finding, value: 'x', relationshipType: RelationshipType.CONTAINS });
  it('nests children and the Content Template Sequence', () => {
    const root = new ContainerContentItem({
      name: Codes.DiagnosticImagingReport,
      templateIdentifier: '2000',
      children: [child],
    });
    const ds = root.toDataset();
    expect(ds.ContinuityOfContent).toBe('SEPARATE');
    expect(ds.ContentTemplateSequence).toEqual([
      { MappingResource: 'DCMR', MappingResourceUID: '1.2.840.10008.8.1.1', TemplateIdentifier: '2000' },
    ]);
    expect(ds.ContentSequence).toEqual([child.toDataset()]);
    expect(ds.RelationshipType).toBeUndefined();
  });
  it('requires a name on the root, allows none on a nested container', () => {
    expect(() => new ContainerContentItem({} as never)).toThrow(/name/);
    expect(new ContainerContentItem({ relationshipType: RelationshipType.CONTAINS } as never).name).toBeUndefined();
  });
  it('rejects children without relationship, non-items, bad continuity, bad relationship, bad template', () => {
    const orphan = new TextContentItem({ name: Codes.Finding, value: 'x' });
    expect(() => new ContainerContentItem({ name: Codes.Findings, children: [orphan] })).toThrow(
      /children\[0\] has no relationshipType/,
    );
    expect(() => new ContainerContentItem({ name: Codes.Findings, children: [{} as never] })).toThrow(
      /not a ContentItem/,
    );
    expect(() => new ContainerContentItem({ name: Codes.Findings, continuityOfContent: 'MAYBE' as never })).toThrow(
      /continuityOfContent/,
    );
    expect(() => new ContainerContentItem({ name: Codes.Findings, relationshipType: 'OWNS' as never })).toThrow(
      /relationshipType/,
    );
    expect(() => new ContainerContentItem({ name: Codes.Findings, templateIdentifier: 'TID2000' })).toThrow(
      /templateIdentifier/,
    );
  });
});

describe('vr string rules', () => {
  it('firstForbiddenUtIndex accepts paired surrogates and the allowed controls', () => {
    expect(firstForbiddenUtIndex('a😀\t\n\f\r')).toBe(-1);
    expect(firstForbiddenUtIndex('ab\udc00')).toBe(2);
    expect(firstForbiddenUtIndex('\ud800')).toBe(0);
    expect(replaceForbiddenUt('\u0001x\u0002')).toBe('\ufffdx\ufffd');
  });
  it('isShortOrLongString enforces length, backslash and controls', () => {
    expect(isShortOrLongString('Ödem', 16)).toBe(true);
    expect(isShortOrLongString('x'.repeat(17), 16)).toBe(false);
    expect(isShortOrLongString('a\\b', 16)).toBe(false);
    expect(isShortOrLongString('a\tb', 16)).toBe(false);
    expect(isShortOrLongString('  ', 16)).toBe(false);
  });
});
