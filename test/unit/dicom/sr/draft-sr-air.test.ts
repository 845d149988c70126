import { Codes, codeEquals } from '../../../../src/dicom/sr/coding.js';
import {
  DRAFT_SR_DISCLAIMER,
  DRAFT_SR_SERIES_DESCRIPTION,
  deriveUid,
  draftPdfSopInstanceUid,
  draftSopInstanceUid,
  SrProfile,
} from '../../../../src/dicom/sr/draft-policy.js';
import { buildDraftSr } from '../../../../src/dicom/sr/draft-sr.js';
import { findingTexts, readSr } from '../../../../src/dicom/sr/reader.js';
import { SopClass } from '../../../../src/dicom/uids.js';
import { SrValidationError } from '../../../../src/errors.js';
import { ALGORITHM, FIXED_NOW, paramsFor, sibling, sourceHeader } from './sr-fixtures.js';

const ct = sourceHeader('CT_small.dcm');
const study = [ct, sibling(ct, 1), sibling(ct, 2, true)];
const NASTY = 'é ß 日本語 😀 – Zeile 1\nZeile 2';
const LONG = `${'x'.repeat(10_000)} END 日本`;
const PRED = {
  sopClassUid: SopClass.ComprehensiveSrStorage,
  sopInstanceUid: '2.25.11',
  seriesInstanceUid: '2.25.12',
  studyInstanceUid: String(ct.StudyInstanceUID),
};

describe.each([SrProfile.Report, SrProfile.Air])(
  '%s profile: build → write → parse compares every field',
  (profile) => {
    const sr = buildDraftSr({ ...paramsFor(study, [NASTY, LONG]), profile, predecessor: [PRED] });
    const doc = readSr(sr.part10);

    it('header: SOP class, placement, flags, dates, character set', () => {
      expect(doc.sopClassUid).toBe(
        profile === 'air' ? SopClass.Comprehensive3dSrStorage : SopClass.ComprehensiveSrStorage,
      );
      expect(doc.specificCharacterSet).toBe('ISO_IR 192');
      expect([doc.sopInstanceUid, doc.studyInstanceUid, doc.seriesInstanceUid]).toEqual([
        sr.sopInstanceUid,
        ct.StudyInstanceUID,
        sr.seriesInstanceUid,
      ]);
      expect([doc.modality, doc.seriesNumber, doc.seriesDescription, doc.instanceNumber]).toEqual([
        'SR',
        9901,
        DRAFT_SR_SERIES_DESCRIPTION,
        1,
      ]);
      expect([doc.preliminaryFlag, doc.verificationFlag, doc.verifyingObserverCount]).toEqual([
        'PRELIMINARY',
        'UNVERIFIED',
        0,
      ]);
      expect([doc.completionFlag, doc.completionFlagDescription]).toEqual([
        'PARTIAL',
        'AI findings for 2 of 3 input images',
      ]);
      expect([doc.contentDate, doc.contentTime, doc.timezoneOffsetFromUtc]).toEqual([
        '20250304',
        '050607.089',
        '+0000',
      ]);
      expect([doc.instanceCreationDate, doc.instanceCreationTime]).toEqual(['20250304', '050607.089']);
      expect(doc.templateIdentifier).toBe(profile === 'air' ? '1500' : '2000');
    });
    it('equipment: general and contributing, Device UID, purpose of reference per profile', () => {
      expect([doc.manufacturer, doc.manufacturerModelName, doc.softwareVersions, doc.deviceSerialNumber]).toEqual([
        ALGORITHM.manufacturer,
        ALGORITHM.name,
        ALGORITHM.version,
        ALGORITHM.deviceUid,
      ]);
      expect(doc.contributingEquipment).toHaveLength(1);
      const eq = doc.contributingEquipment[0];
      expect([eq?.manufacturer, eq?.manufacturerModelName, eq?.softwareVersions, eq?.deviceUid]).toEqual([
        ALGORITHM.manufacturer,
        ALGORITHM.name,
        ALGORITHM.version,
        ALGORITHM.deviceUid,
      ]);
      expect(
        codeEquals(
          eq?.purposeOfReference[0],
          profile === 'air' ? Codes.ProcessingAlgorithm : Codes.ProcessingEquipment,
        ),
      ).toBe(true);
    });
    it('evidence and predecessor documents', () => {
      expect(doc.currentRequestedProcedureEvidence.map((e) => e.sopInstanceUid)).toEqual(
        study.map((s) => s.SOPInstanceUID),
      );
      expect(doc.currentRequestedProcedureEvidence[2]?.seriesInstanceUid).toBe(study[2]?.SeriesInstanceUID);
      expect(doc.predecessorDocuments).toEqual([PRED]);
    });
    it('content: the built tree equals the parsed tree, non-ASCII and 10,000 characters intact', () => {
      expect(doc.content.toDataset()).toEqual(sr.content.toDataset());
      expect(findingTexts(doc)).toEqual([
        { text: NASTY, images: [{ sopClassUid: ct.SOPClassUID, sopInstanceUid: ct.SOPInstanceUID, frameNumbers: [] }] },
        {
          text: LONG,
          images: [{ sopClassUid: ct.SOPClassUID, sopInstanceUid: study[1]?.SOPInstanceUID, frameNumbers: [] }],
        },
      ]);
      expect(LONG.length).toBeGreaterThanOrEqual(10_000);
      expect(JSON.stringify(doc.content.toDataset())).toContain(DRAFT_SR_DISCLAIMER);
      expect(JSON.stringify(doc.content.toDataset())).toContain(ALGORITHM.parameters);
    });
  },
);

describe('air profile specifics', () => {
  const sr = buildDraftSr({ ...paramsFor(study, ['a', 'b', 'c']), profile: 'air' });
  it('reports the imaging procedure from the modality (not the algorithm) and lists every image in the library', () => {
    const root = sr.content;
    const proc = root.children.filter((c) => codeEquals(c.name, Codes.ProcedureReported));
    expect(proc.map((p) => (p as unknown as { value: { value: string } }).value.value)).toEqual(['77477000']);
    const lib = root.children.find((c) => codeEquals(c.name, Codes.ImageLibrary));
    expect(lib?.children[0]?.children).toHaveLength(3);
    const groups = root.children.find((c) => codeEquals(c.name, Codes.ImagingMeasurements))?.children ?? [];
    expect(groups).toHaveLength(3);
    expect(sr.dataset.CompletionFlag).toBe('COMPLETE');
  });
  it('uses the Procedure Code Sequence of the source when it has one', () => {
    const withProc = study.map((s) => ({
      ...s,
      ProcedureCodeSequence: [{ CodeValue: 'RPID17', CodingSchemeDesignator: 'RADLEX', CodeMeaning: 'CT Chest' }],
    }));
    const r = buildDraftSr({ ...paramsFor(withProc, ['a']), profile: 'air' });
    const proc = r.content.children.find((c) => codeEquals(c.name, Codes.ProcedureReported)) as unknown as {
      value: { value: string; scheme: string };
    };
    expect([proc.value.value, proc.value.scheme]).toEqual(['RPID17', 'RADLEX']);
  });
  it('tracking UIDs are unique per group and stable across builds', () => {
    const uids = (x: typeof sr) => JSON.stringify(x.content.toDataset()).match(/"UID":"[0-9.]+"/g);
    expect(uids(sr)).toEqual(uids(buildDraftSr({ ...paramsFor(study, ['a', 'b', 'c']), profile: 'air' })));
    expect(new Set(uids(sr)).size).toBe(4); // device observer UID + 3 tracking UIDs
  });
});

describe('idempotent UIDs', () => {
  const p = paramsFor(study, ['a']);
  it('the same inputs twice give the same SOP Instance UID, per profile', () => {
    for (const profile of [SrProfile.Report, SrProfile.Air]) {
      expect(buildDraftSr({ ...p, profile }).sopInstanceUid).toBe(
        buildDraftSr({ ...p, profile, now: new Date() }).sopInstanceUid,
      );
    }
  });
  it('two profiles of the same inputs do not collide; the report UID is unchanged from before profiles', () => {
    const report = buildDraftSr(p).sopInstanceUid;
    const air = buildDraftSr({ ...p, profile: 'air' }).sopInstanceUid;
    expect(air).not.toBe(report);
    const sorted = study.map((s) => String(s.SOPInstanceUID)).sort();
    expect(report).toBe(deriveUid('sr-instance', String(ct.StudyInstanceUID), ALGORITHM.deviceUid, ...sorted));
    expect(air).toBe(draftSopInstanceUid(String(ct.StudyInstanceUID), ALGORITHM.deviceUid, sorted, 'air'));
  });
  it('the PDF companion UID differs from both SR UIDs', () => {
    const report = buildDraftSr(p).sopInstanceUid;
    expect(draftPdfSopInstanceUid(report)).not.toBe(report);
    expect(draftPdfSopInstanceUid(report)).toBe(draftPdfSopInstanceUid(report));
  });
  it('a new model version (Device UID) gives a new SOP Instance UID and series', () => {
    const a = buildDraftSr(p);
    const b = buildDraftSr({ ...p, algorithm: { ...ALGORITHM, version: '2', deviceUid: '2.25.99' } });
    expect(b.sopInstanceUid).not.toBe(a.sopInstanceUid);
    expect(b.seriesInstanceUid).not.toBe(a.seriesInstanceUid);
  });
});

describe('buildDraftSr: new arguments', () => {
  const p = paramsFor([ct], ['a']);
  it.each([
    ['profile', { profile: 'tid9999' }],
    ['predecessor', { predecessor: {} }],
    ['predecessor[0]', { predecessor: [null] }],
    ['predecessor[0].sopInstanceUid', { predecessor: [{ ...PRED, sopInstanceUid: 'x' }] }],
    ['predecessor[0].studyInstanceUid', { predecessor: [{ ...PRED, studyInstanceUid: undefined }] }],
  ])('rejects a bad %s', (what, patch) => {
    const fn = () => buildDraftSr({ ...p, ...(patch as object) } as never);
    expect(fn).toThrow(SrValidationError);
    expect(fn).toThrow(`buildDraftSr: ${what}`);
  });
  it('omits the Predecessor Documents Sequence when there is none', () => {
    expect(buildDraftSr(p).dataset.PredecessorDocumentsSequence).toBeUndefined();
  });
});

it('fixture sanity', () => {
  expect(FIXED_NOW.toISOString()).toBe('2025-03-04T05:06:07.089Z');
});
