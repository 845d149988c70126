import { parsePart10 } from '../../../../src/dicom/dataset.js';
import { Codes, codeEquals } from '../../../../src/dicom/sr/coding.js';
import type {
  CodeContentItem,
  ImageContentItem,
  TextContentItem,
  UidRefContentItem,
} from '../../../../src/dicom/sr/content-items.js';
import {
  DRAFT_SR_SERIES_DESCRIPTION,
  DRAFT_SR_SERIES_NUMBER,
  deriveUid,
  draftSeriesInstanceUid,
  FIXTURE_SR_SERIES_DESCRIPTION,
} from '../../../../src/dicom/sr/draft-policy.js';
import { buildDraftSr } from '../../../../src/dicom/sr/draft-sr.js';
import { readSr } from '../../../../src/dicom/sr/reader.js';
import { RADSCRIBE_IMPLEMENTATION_CLASS_UID } from '../../../../src/dicom/sr/sr-document.js';
import { SopClass } from '../../../../src/dicom/uids.js';
import { SrValidationError } from '../../../../src/errors.js';
import { ALGORITHM, FIXED_NOW, paramsFor, sibling, sourceHeader } from './sr-fixtures.js';

const ct = sourceHeader('CT_small.dcm');
const mr = sourceHeader('MR_small.dcm');
// Three instances of the CT study in two series (siblings derived from the real header).
const ctStudy = [ct, sibling(ct, 1), sibling(ct, 2, true)];

describe('buildDraftSr: placement and flags', () => {
  const sr = buildDraftSr(paramsFor(ctStudy, ['one', 'two', 'three']));
  const ds = sr.dataset;

  it('is a Comprehensive SR in the source study, in a new deterministic series', () => {
    expect(ds.SOPClassUID).toBe(SopClass.ComprehensiveSrStorage);
    expect(ds.StudyInstanceUID).toBe(ct.StudyInstanceUID);
    expect(sr.seriesInstanceUid).not.toBe(ct.SeriesInstanceUID);
    expect(sr.seriesInstanceUid).toBe(draftSeriesInstanceUid(String(ct.StudyInstanceUID), ALGORITHM.deviceUid));
    expect([ds.Modality, ds.SeriesNumber, ds.SeriesDescription]).toEqual([
      'SR',
      DRAFT_SR_SERIES_NUMBER,
      DRAFT_SR_SERIES_DESCRIPTION,
    ]);
    expect(sr.sopInstanceUid).toMatch(/^2\.25\.[1-9][0-9]{0,38}$/);
  });
  it('copies patient and study attributes from the first source', () => {
    for (const kw of [
      'PatientName',
      'PatientID',
      'PatientBirthDate',
      'PatientSex',
      'StudyDate',
      'StudyTime',
      'StudyID',
      'AccessionNumber',
    ]) {
      expect(ds[kw]).toEqual(ct[kw] ?? '');
    }
  });
  it('is PRELIMINARY, UNVERIFIED without verifying observers, COMPLETE when every image is described', () => {
    expect([ds.PreliminaryFlag, ds.VerificationFlag, ds.CompletionFlag]).toEqual([
      'PRELIMINARY',
      'UNVERIFIED',
      'COMPLETE',
    ]);
    expect(ds.VerifyingObserverSequence).toBeUndefined();
    expect(ds.CompletionFlagDescription).toBeUndefined();
    expect(ds.ReferencedPerformedProcedureStepSequence).toEqual([]);
    expect(ds.PerformedProcedureCodeSequence).toEqual([]);
  });
  it('lists every input instance as evidence, grouped by series', () => {
    const seq = ds.CurrentRequestedProcedureEvidenceSequence as Array<Record<string, unknown>>;
    expect(seq).toHaveLength(1);
    const series = seq[0]?.ReferencedSeriesSequence as Array<{
      SeriesInstanceUID: string;
      ReferencedSOPSequence: unknown[];
    }>;
    expect(series.map((s) => [s.SeriesInstanceUID, s.ReferencedSOPSequence.length])).toEqual([
      [ct.SeriesInstanceUID, 2],
      [ctStudy[2]?.SeriesInstanceUID, 1],
    ]);
  });
  it('writes UTF-8, content/creation date-time in UTC, equipment and the DCMR 2000 template', () => {
    expect(ds.SpecificCharacterSet).toBe('ISO_IR 192');
    expect([ds.ContentDate, ds.ContentTime, ds.TimezoneOffsetFromUTC]).toEqual(['20250304', '050607.089', '+0000']);
    expect([ds.InstanceCreationDate, ds.InstanceCreationTime]).toEqual(['20250304', '050607.089']);
    expect([ds.Manufacturer, ds.ManufacturerModelName, ds.SoftwareVersions, ds.DeviceSerialNumber]).toEqual([
      ALGORITHM.manufacturer,
      ALGORITHM.name,
      ALGORITHM.version,
      ALGORITHM.deviceUid,
    ]);
    expect((ds.ContributingEquipmentSequence as Array<Record<string, unknown>>)[0]?.DeviceUID).toBe(
      ALGORITHM.deviceUid,
    );
    expect(ds.ContentTemplateSequence).toEqual([
      expect.objectContaining({ MappingResource: 'DCMR', TemplateIdentifier: '2000' }),
    ]);
  });
  it('writes Part 10 with our File Meta Information', () => {
    const p = parsePart10(sr.part10);
    expect(p.transferSyntaxUid).toBe('1.2.840.10008.1.2.1');
    expect(p.meta.ImplementationClassUID).toBe(RADSCRIBE_IMPLEMENTATION_CLASS_UID);
    expect(String(p.meta.ImplementationVersionName).trim()).toBe('RADSCRIBE_0_1');
    expect(p.meta.MediaStorageSOPInstanceUID).toBe(sr.sopInstanceUid);
    expect(p.meta.MediaStorageSOPClassUID).toBe(SopClass.ComprehensiveSrStorage);
  });
});

describe('buildDraftSr: completion and fixture labelling', () => {
  it('is PARTIAL with a description when an input image has no finding', () => {
    const ds = buildDraftSr(paramsFor(ctStudy, ['only one'])).dataset;
    expect(ds.CompletionFlag).toBe('PARTIAL');
    expect(ds.CompletionFlagDescription).toBe('AI findings for 1 of 3 input images');
  });
  it('honours an explicit completionComplete=false', () => {
    const ds = buildDraftSr({ ...paramsFor([ct], ['x']), completionComplete: false }).dataset;
    expect([ds.CompletionFlag, ds.CompletionFlagDescription]).toEqual(['PARTIAL', 'AI output incomplete']);
  });
  it('says TEST FIXTURE in series description (≤ 64 chars and bytes) and disclaimer', () => {
    const sr = buildDraftSr({ ...paramsFor([ct], ['x']), algorithm: { ...ALGORITHM, fixture: true } });
    expect(sr.dataset.SeriesDescription).toBe(FIXTURE_SR_SERIES_DESCRIPTION);
    for (const d of [FIXTURE_SR_SERIES_DESCRIPTION, DRAFT_SR_SERIES_DESCRIPTION]) {
      expect(d.length).toBeLessThanOrEqual(64);
      expect(Buffer.byteLength(d, 'utf8')).toBeLessThanOrEqual(64);
    }
    const doc = readSr(sr.part10);
    const disclaimer = doc.content.children.at(-1) as TextContentItem;
    expect(disclaimer.value).toMatch(
      /^TEST FIXTURE – OUTPUT IS MEANINGLESS\. UNVERIFIED AI DRAFT.*NOT FOR DIAGNOSTIC USE\.$/,
    );
  });
  it('sanitises control characters in model text instead of failing', () => {
    const doc = readSr(buildDraftSr(paramsFor([ct], ['bad\u0000byte\u001b end   '])).part10);
    const finding = doc.content.children
      .find((c) => codeEquals(c.name, Codes.Findings))
      ?.children.at(-1) as TextContentItem;
    expect(finding.value).toBe('bad\ufffdbyte\ufffd end');
  });
});

describe('buildDraftSr: deterministic UIDs', () => {
  const uidOf = (p: Parameters<typeof buildDraftSr>[0]) => buildDraftSr(p).sopInstanceUid;
  it('same inputs → same SOP Instance UID, regardless of order, time or text', () => {
    const a = uidOf(paramsFor(ctStudy, ['a', 'b', 'c']));
    const b = uidOf({ ...paramsFor([...ctStudy].reverse(), ['z']), now: new Date('2030-01-01T00:00:00Z') });
    expect(b).toBe(a);
  });
  it('different input set or Device UID → different SOP Instance UID', () => {
    const base = uidOf(paramsFor(ctStudy, ['a']));
    expect(uidOf(paramsFor(ctStudy.slice(0, 2), ['a']))).not.toBe(base);
    expect(uidOf({ ...paramsFor(ctStudy, ['a']), algorithm: { ...ALGORITHM, deviceUid: '2.25.7' } })).not.toBe(base);
  });
  it('deriveUid is a valid 2.25 UID with UUID version 8 and RFC variant', () => {
    for (let i = 0; i < 50; i++) {
      const uid = deriveUid('t', String(i));
      expect(uid.length).toBeLessThanOrEqual(64);
      const hex = BigInt(uid.slice(5)).toString(16).padStart(32, '0');
      expect(hex[12]).toBe('8');
      expect(['8', '9', 'a', 'b']).toContain(hex[16]);
    }
    expect(deriveUid('a', 'bc')).not.toBe(deriveUid('ab', 'c'));
  });
});

describe('buildDraftSr: invalid arguments throw SrValidationError naming them', () => {
  const good = paramsFor([ct], ['x']);
  const finding = good.findings[0] as (typeof good.findings)[number];
  it.each<[string, Record<string, unknown>]>([
    ['sources must be a non-empty array', { sources: [] }],
    ['findings must be a non-empty array', { findings: [] }],
    ['all sources must share one study', { sources: [ct, mr] }],
    ['sources[0].SOPInstanceUID', { sources: [{ ...ct, SOPInstanceUID: 'not-a-uid' }] }],
    ['sources[0].StudyInstanceUID', { sources: [{ ...ct, StudyInstanceUID: undefined }] }],
    ['sources[1] repeats SOPInstanceUID', { sources: [ct, { ...ct, SeriesInstanceUID: '1.2.3' }] }],
    ['findings[0].sopInstanceUid is not among the sources', { findings: [{ ...finding, sopInstanceUid: '1.2.3' }] }],
    [
      "findings[0].sopClassUid differs from the source's SOPClassUID",
      { findings: [{ ...finding, sopClassUid: '1.2.3' }] },
    ],
    ['findings[0].frameNumber must be a positive integer', { findings: [{ ...finding, frameNumber: 0 }] }],
    [
      "findings[0].frameNumber exceeds the source's NumberOfFrames",
      { sources: [{ ...ct, NumberOfFrames: 2 }], findings: [{ ...finding, frameNumber: 3 }] },
    ],
    ['findings[0].text must be non-empty', { findings: [{ ...finding, text: ' \t\n' }] }],
    ['findings[0].text must be a string', { findings: [{ ...finding, text: undefined }] }],
    ['algorithm.name', { algorithm: { ...ALGORITHM, name: '' } }],
    ['algorithm.version', { algorithm: { ...ALGORITHM, version: 'v'.repeat(65) } }],
    ['algorithm.manufacturer', { algorithm: { ...ALGORITHM, manufacturer: 'a\\b' } }],
    ['algorithm.deviceUid', { algorithm: { ...ALGORITHM, deviceUid: '1.2.03' } }],
    ['algorithm.parameters', { algorithm: { ...ALGORITHM, parameters: '' } }],
    ['now must be a valid Date', { now: new Date('nonsense') }],
    ['completionComplete must be a boolean', { completionComplete: 'yes' }],
  ])('%s', (message, override) => {
    const make = () => buildDraftSr({ ...good, ...override } as never);
    expect(make).toThrow(SrValidationError);
    expect(make).toThrow(message);
  });
  it('accepts a frame within NumberOfFrames and references it', () => {
    const sr = buildDraftSr({
      ...good,
      sources: [{ ...ct, NumberOfFrames: 4 }],
      findings: [{ ...finding, frameNumber: 4 }],
    });
    const doc = readSr(sr.part10);
    const img = doc.content.children.find((c) => codeEquals(c.name, Codes.Findings))?.children.at(-1)
      ?.children[0] as ImageContentItem;
    expect(img.frameNumbers).toEqual([4]);
  });
});

describe('buildDraftSr → Part 10 → readSr round trip', () => {
  const texts = [
    'Ödem – é ß 日本語 😀 Befund',
    `${'Lorem ipsum dolor sit amet. '.repeat(400).slice(0, 9_997)}end`,
    'Third:\r\nline two',
  ];
  const sr = buildDraftSr(paramsFor(ctStudy, texts));
  const doc = readSr(sr.part10);

  it('keeps document attributes and flags', () => {
    expect(doc).toMatchObject({
      sopClassUid: SopClass.ComprehensiveSrStorage,
      sopInstanceUid: sr.sopInstanceUid,
      seriesInstanceUid: sr.seriesInstanceUid,
      studyInstanceUid: ct.StudyInstanceUID,
      specificCharacterSet: 'ISO_IR 192',
      modality: 'SR',
      seriesNumber: DRAFT_SR_SERIES_NUMBER,
      seriesDescription: DRAFT_SR_SERIES_DESCRIPTION,
      preliminaryFlag: 'PRELIMINARY',
      verificationFlag: 'UNVERIFIED',
      completionFlag: 'COMPLETE',
      verifyingObserverCount: 0,
      contentDate: '20250304',
      contentTime: '050607.089',
      timezoneOffsetFromUtc: '+0000',
      templateIdentifier: '2000',
      implementationClassUid: RADSCRIBE_IMPLEMENTATION_CLASS_UID,
      contributingDeviceUids: [ALGORITHM.deviceUid],
      manufacturerModelName: ALGORITHM.name,
    });
    expect(FIXED_NOW.toISOString()).toBe('2025-03-04T05:06:07.089Z');
  });
  it('keeps the evidence', () => {
    expect(doc.currentRequestedProcedureEvidence).toEqual(
      ctStudy.map((s) => ({
        studyInstanceUid: s.StudyInstanceUID,
        seriesInstanceUid: s.SeriesInstanceUID,
        sopClassUid: s.SOPClassUID,
        sopInstanceUid: s.SOPInstanceUID,
      })),
    );
  });
  it('keeps every finding text exactly (non-ASCII, CRLF, 10 000 characters) and its image reference', () => {
    expect(texts[1]).toHaveLength(10_000);
    const findings = doc.content.children.find((c) => codeEquals(c.name, Codes.Findings));
    const items = (findings?.children ?? []).filter((c) => codeEquals(c.name, Codes.Finding)) as TextContentItem[];
    expect(items.map((i) => i.value)).toEqual(texts);
    expect(items.map((i) => (i.children[0] as ImageContentItem).referencedSopInstanceUid)).toEqual(
      ctStudy.map((s) => s.SOPInstanceUID),
    );
  });
  it('keeps observer context and algorithm identification', () => {
    const uid = doc.content.children.find((c) => codeEquals(c.name, Codes.DeviceObserverUid)) as UidRefContentItem;
    expect(uid.value).toBe(ALGORITHM.deviceUid);
    const findings = doc.content.children.find((c) => codeEquals(c.name, Codes.Findings));
    const param = findings?.children.find((c) => codeEquals(c.name, Codes.AlgorithmParameters)) as TextContentItem;
    expect(param.value).toBe(ALGORITHM.parameters);
    const family = findings?.children.find((c) => codeEquals(c.name, Codes.AlgorithmFamily)) as CodeContentItem;
    expect(family.value).toEqual(Codes.ArtificialIntelligence);
  });
  it('re-serialises the read tree to the same content dataset', () => {
    const { ContentSequence } = doc.content.toDataset();
    expect(ContentSequence).toEqual(stripVrMap(sr.dataset.ContentSequence));
  });
});

function stripVrMap(v: unknown): unknown {
  if (Array.isArray(v)) return v.map(stripVrMap);
  if (v !== null && typeof v === 'object') {
    return Object.fromEntries(
      Object.entries(v)
        .filter(([k]) => k !== '_vrMap')
        .map(([k, x]) => [k, stripVrMap(x)]),
    );
  }
  return v;
}
