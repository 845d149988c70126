import { Codes, code, codeEquals } from '../../../../src/dicom/sr/coding.js';
import {
  type CodeContentItem,
  type ContainerContentItem,
  type ContentItem,
  ImageContentItem,
  RelationshipType,
  type TextContentItem,
} from '../../../../src/dicom/sr/content-items.js';
import {
  AlgorithmIdentification,
  DeviceObserverIdentifyingAttributes,
  ImageLibrary,
  MeasurementReport,
  MeasurementsAndQualitativeEvaluations,
  ObservationContext,
  ObserverContext,
  TrackingIdentifier,
} from '../../../../src/dicom/sr/templates.js';
import { SrValidationError } from '../../../../src/errors.js';

/** TID 1500 family (air profile): construction and each invalid argument (STYLE §2.3, highdicom tests). */

const CT = '1.2.840.10008.5.1.4.1.1.2';
const IMG = { sopClassUid: CT, sopInstanceUid: '1.2.3.4' };
const algo = () => new AlgorithmIdentification({ name: 'M', version: '1', parameters: ['prompt'] });
const tracking = () => new TrackingIdentifier({ identifier: 'AI draft finding 1', uid: '2.25.7' });
const observation = () =>
  new ObservationContext({
    observerContext: new ObserverContext({
      observerIdentifyingAttributes: new DeviceObserverIdentifyingAttributes({ uid: '2.25.42' }),
    }),
  });
const group = (text = 'Ödem 日本語') =>
  new MeasurementsAndQualitativeEvaluations({
    trackingIdentifier: tracking(),
    algorithmIdentification: algo(),
    text,
    image: IMG,
  });

function names(items: readonly ContentItem[]): string[] {
  return items.map((i) => i.name?.value ?? '-');
}
function expectThrowNaming(fn: () => unknown, what: string) {
  expect(fn).toThrow(SrValidationError);
  expect(fn).toThrow(what);
}

describe('ObservationContext (TID 1001)', () => {
  it('holds the device observer context as HAS OBS CONTEXT items', () => {
    const items = observation().contentItems;
    expect(names(items)).toEqual(['121005', '121012']);
    expect(items.every((i) => i.relationshipType === RelationshipType.HAS_OBS_CONTEXT)).toBe(true);
  });
  it('rejects a missing or wrong observerContext', () => {
    expectThrowNaming(() => new ObservationContext({ observerContext: {} as never }), 'observerContext');
    expectThrowNaming(() => new ObservationContext(undefined as never), 'observerContext');
  });
});

describe('TrackingIdentifier (TID 4108)', () => {
  it('is a TEXT identifier and a UIDREF unique identifier, HAS OBS CONTEXT', () => {
    const t = tracking();
    expect(names(t.contentItems)).toEqual(['112039', '112040']);
    expect(t.contentItems.every((i) => i.relationshipType === RelationshipType.HAS_OBS_CONTEXT)).toBe(true);
  });
  it.each([
    [{ identifier: '', uid: '2.25.7' }, 'identifier'],
    [{ identifier: 'x'.repeat(65), uid: '2.25.7' }, 'identifier'],
    [{ identifier: 'a\\b', uid: '2.25.7' }, 'identifier'],
    [{ identifier: 'ok', uid: 'not-a-uid' }, 'uid'],
    [{ identifier: 'ok', uid: undefined }, 'uid'],
  ])('rejects %j naming %s', (opts, what) => {
    expectThrowNaming(() => new TrackingIdentifier(opts as never), `TrackingIdentifier ${what}`);
  });
});

describe('ImageLibrary (TID 1600)', () => {
  it('nests one Image Library Group with an IMAGE per entry', () => {
    const [lib] = new ImageLibrary({ images: [IMG, { ...IMG, sopInstanceUid: '1.2.3.5' }] }).contentItems;
    expect(codeEquals(lib?.name, Codes.ImageLibrary)).toBe(true);
    const grp = lib?.children[0] as ContainerContentItem;
    expect(codeEquals(grp.name, Codes.ImageLibraryGroup)).toBe(true);
    expect(grp.children.map((c) => (c as ImageContentItem).referencedSopInstanceUid)).toEqual(['1.2.3.4', '1.2.3.5']);
  });
  it.each([
    [{ images: [] }, 'images must be a non-empty array'],
    [{ images: undefined }, 'images must be a non-empty array'],
    [{ images: [null] }, 'images[0]'],
    [{ images: [{ sopClassUid: CT, sopInstanceUid: 'x' }] }, 'images[0]'],
    [{ images: [{ sopClassUid: 'bad', sopInstanceUid: '1.2' }] }, 'images[0]'],
  ])('rejects %j', (opts, what) => {
    expectThrowNaming(() => new ImageLibrary(opts as never), what);
  });
});

describe('MeasurementsAndQualitativeEvaluations (TID 1501)', () => {
  it('orders tracking id, finding type, TID 4019 and the TEXT evaluation with its image', () => {
    const [g] = group().contentItems;
    expect(codeEquals(g?.name, Codes.MeasurementGroup)).toBe(true);
    expect(names(g?.children ?? [])).toEqual([
      '112039',
      '112040',
      '121071',
      '111000',
      '111001',
      '111003',
      '111002',
      '121071',
    ]);
    const findingType = g?.children[2] as CodeContentItem;
    expect(findingType.relationshipType).toBe(RelationshipType.HAS_CONCEPT_MOD);
    expect(codeEquals(findingType.value, Codes.ClinicalFinding)).toBe(true);
    const text = g?.children[7] as TextContentItem;
    expect([text.relationshipType, text.value]).toEqual([RelationshipType.CONTAINS, 'Ödem 日本語']);
    const img = text.children[0] as ImageContentItem;
    expect(img).toBeInstanceOf(ImageContentItem);
    expect(img.relationshipType).toBe(RelationshipType.INFERRED_FROM);
  });
  it('accepts another finding type', () => {
    const nodule = code('27925004', 'SCT', 'Nodule');
    const g = new MeasurementsAndQualitativeEvaluations({
      trackingIdentifier: tracking(),
      algorithmIdentification: algo(),
      findingType: nodule,
      text: 't',
      image: IMG,
    });
    const [grp] = g.contentItems;
    expect((grp as ContainerContentItem).children[2]).toMatchObject({ value: nodule });
  });
  const base = () => ({ trackingIdentifier: tracking(), algorithmIdentification: algo(), text: 't', image: IMG });
  it.each([
    ['trackingIdentifier', { trackingIdentifier: {} }],
    ['algorithmIdentification', { algorithmIdentification: { contentItems: [] } }],
    ['findingType', { findingType: { value: 'x' } }],
    ['text', { text: '   ' }],
    ['text', { text: 42 }],
    ['image', { image: null }],
    ['image', { image: { sopClassUid: CT, sopInstanceUid: '' } }],
  ])('rejects a bad %s', (what, patch) => {
    expectThrowNaming(
      () => new MeasurementsAndQualitativeEvaluations({ ...base(), ...(patch as object) } as never),
      `MeasurementsAndQualitativeEvaluations ${what}`,
    );
  });
});

describe('MeasurementReport (TID 1500)', () => {
  const base = () => ({
    observationContext: observation(),
    procedureReported: [Codes.DiagnosticImagingReport],
    imageLibrary: new ImageLibrary({ images: [IMG] }),
    measurementGroups: [group()],
    disclaimer: 'UNVERIFIED AI DRAFT',
  });
  it('builds the TID 1500 root in template order', () => {
    const r = new MeasurementReport(base());
    expect(r.root.templateIdentifier).toBe('1500');
    expect(codeEquals(r.root.name, Codes.ImagingMeasurementReport)).toBe(true);
    expect(names(r.root.children)).toEqual(['121049', '121005', '121012', '121058', '111028', '126010', 'C0034375']);
    const qe = r.root.children[6] as ContainerContentItem;
    expect((qe.children[0] as TextContentItem).value).toBe('UNVERIFIED AI DRAFT');
  });
  it.each([
    [
      'observationContext',
      {
        observationContext: new ObserverContext({
          observerIdentifyingAttributes: new DeviceObserverIdentifyingAttributes({ uid: '2.25.1' }),
        }),
      },
    ],
    ['language', { language: Codes.EnglishUS }],
    ['procedureReported', { procedureReported: [] }],
    ['procedureReported[0]', { procedureReported: [{ value: '1' }] }],
    ['imageLibrary', { imageLibrary: [IMG] }],
    ['measurementGroups', { measurementGroups: [] }],
    ['measurementGroups[0]', { measurementGroups: [tracking()] }],
    ['disclaimer', { disclaimer: '' }],
  ])('rejects a bad %s', (what, patch) => {
    expectThrowNaming(
      () => new MeasurementReport({ ...base(), ...(patch as object) } as never),
      `MeasurementReport ${what}`,
    );
  });
});
