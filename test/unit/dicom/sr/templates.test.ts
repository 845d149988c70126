import { Codes, code, codeEquals } from '../../../../src/dicom/sr/coding.js';
import {
  CodeContentItem,
  type ContentItem,
  ImageContentItem,
  RelationshipType,
  type TextContentItem,
  type UidRefContentItem,
} from '../../../../src/dicom/sr/content-items.js';
import {
  AlgorithmIdentification,
  BasicDiagnosticImagingReport,
  DeviceObserverIdentifyingAttributes,
  LanguageOfContentItemAndDescendants,
  ObserverContext,
} from '../../../../src/dicom/sr/templates.js';
import { SrValidationError } from '../../../../src/errors.js';

const DEVICE = '2.25.42';
const CT = '1.2.840.10008.5.1.4.1.1.2';

function names(items: readonly ContentItem[]): string[] {
  return items.map((i) => i.name?.value ?? '-');
}

describe('LanguageOfContentItemAndDescendants (TID 1204)', () => {
  it('defaults to en-US as HAS CONCEPT MOD', () => {
    const [item] = new LanguageOfContentItemAndDescendants().contentItems;
    expect(item).toBeInstanceOf(CodeContentItem);
    expect(item?.relationshipType).toBe(RelationshipType.HAS_CONCEPT_MOD);
    expect(codeEquals(item?.name, Codes.LanguageOfContentItemAndDescendants)).toBe(true);
    expect((item as CodeContentItem).value.value).toBe('en-US');
  });
  it('accepts another language and rejects a non-code', () => {
    const de = code('de', 'RFC5646', 'German');
    expect(
      (new LanguageOfContentItemAndDescendants({ language: de }).contentItems[0] as CodeContentItem).value,
    ).toEqual(de);
    expect(() => new LanguageOfContentItemAndDescendants({ language: 'de' as never })).toThrow(SrValidationError);
  });
});

describe('ObserverContext (TID 1002) with DeviceObserverIdentifyingAttributes (TID 1004)', () => {
  it('emits Observer Type = Device, then UID and the optional texts in TID 1004 order', () => {
    const ctx = new ObserverContext({
      observerIdentifyingAttributes: new DeviceObserverIdentifyingAttributes({
        uid: DEVICE,
        name: 'n',
        manufacturer: 'm',
        modelName: 'mm',
        serialNumber: 's',
      }),
    });
    expect(names(ctx.contentItems)).toEqual(['121005', '121012', '121013', '121014', '121015', '121016']);
    expect(ctx.contentItems.every((i) => i.relationshipType === RelationshipType.HAS_OBS_CONTEXT)).toBe(true);
    expect((ctx.contentItems[1] as UidRefContentItem).value).toBe(DEVICE);
  });
  it('omits absent optional attributes', () => {
    expect(names(new DeviceObserverIdentifyingAttributes({ uid: DEVICE }).contentItems)).toEqual(['121012']);
  });
  it.each([
    ['UidRefContentItem value', { uid: '1.02' }],
    ['name', { uid: DEVICE, name: '' }],
    ['manufacturer', { uid: DEVICE, manufacturer: 'x'.repeat(65) }],
    ['serialNumber', { uid: DEVICE, serialNumber: 'a\\b' }],
  ])('rejects a bad %s', (field, opts) => {
    expect(() => new DeviceObserverIdentifyingAttributes(opts)).toThrow(SrValidationError);
    expect(() => new DeviceObserverIdentifyingAttributes(opts)).toThrow(field);
  });
  it('rejects a missing identifying-attributes template', () => {
    expect(() => new ObserverContext({ observerIdentifyingAttributes: {} as never })).toThrow(/TID 1004/);
  });
});

describe('AlgorithmIdentification (TID 4019)', () => {
  it('emits family, name, version, each parameter, manufacturer', () => {
    const a = new AlgorithmIdentification({
      name: 'VLM',
      version: '1',
      parameters: ['prompt A', 'prompt B'],
      manufacturer: 'M',
    });
    expect(names(a.contentItems)).toEqual(['111000', '111001', '111003', '111002', '111002', '122405']);
    expect(a.contentItems.every((i) => i.relationshipType === RelationshipType.HAS_CONCEPT_MOD)).toBe(true);
    expect(codeEquals((a.contentItems[0] as CodeContentItem).value, Codes.ArtificialIntelligence)).toBe(true);
    expect((a.contentItems[4] as TextContentItem).value).toBe('prompt B');
  });
  it.each([
    ['name', { name: '', version: '1' }],
    ['version', { name: 'n', version: 'v'.repeat(65) }],
    ['parameters[0]', { name: 'n', version: '1', parameters: [' '] }],
    ['manufacturer', { name: 'n', version: '1', manufacturer: 'a\nb' }],
    ['family', { name: 'n', version: '1', family: { value: 'x' } as never }],
  ])('rejects a bad %s', (field, opts) => {
    expect(() => new AlgorithmIdentification(opts)).toThrow(SrValidationError);
    expect(() => new AlgorithmIdentification(opts)).toThrow(field);
  });
});

describe('BasicDiagnosticImagingReport (TID 2000)', () => {
  const observerContext = new ObserverContext({
    observerIdentifyingAttributes: new DeviceObserverIdentifyingAttributes({ uid: DEVICE }),
  });
  const finding = { text: 'No acute abnormality.', sopClassUid: CT, sopInstanceUid: '1.2.3', frameNumbers: [1] };

  it('builds root → Findings → Finding → INFERRED FROM IMAGE, plus the disclaimer', () => {
    const r = new BasicDiagnosticImagingReport({
      observerContext,
      algorithmIdentification: new AlgorithmIdentification({ name: 'n', version: '1' }),
      findings: [finding],
      impressions: ['Normal study.'],
      disclaimer: 'UNVERIFIED AI DRAFT',
    });
    expect(r.root.templateIdentifier).toBe('2000');
    expect(codeEquals(r.root.name, Codes.DiagnosticImagingReport)).toBe(true);
    expect(names(r.root.children)).toEqual(['121049', '121005', '121012', '59776-5', '19005-8', '121106']);
    const findings = r.root.children[3];
    expect(names(findings?.children ?? [])).toEqual(['111000', '111001', '111003', '121071']);
    const text = findings?.children[3] as TextContentItem;
    expect(text.value).toBe(finding.text);
    const img = text.children[0] as ImageContentItem;
    expect(img).toBeInstanceOf(ImageContentItem);
    expect(img.relationshipType).toBe(RelationshipType.INFERRED_FROM);
    expect([img.referencedSopInstanceUid, img.frameNumbers]).toEqual(['1.2.3', [1]]);
    expect((r.root.children[5] as TextContentItem).value).toBe('UNVERIFIED AI DRAFT');
  });
  it.each([
    ['findings', { findings: [] }],
    ['findings[0].text', { findings: [{ ...finding, text: '' }] }],
    ['referencedSopInstanceUid', { findings: [{ ...finding, sopInstanceUid: 'nope' }] }],
    ['disclaimer', { disclaimer: '' }],
    ['observerContext', { observerContext: {} }],
  ])('rejects a bad %s', (field, override) => {
    const make = () =>
      new BasicDiagnosticImagingReport({
        observerContext,
        findings: [finding],
        disclaimer: 'd',
        ...(override as object),
      } as never);
    expect(make).toThrow(SrValidationError);
    expect(make).toThrow(field);
  });
});
