import { parsePart10 } from '../../../../src/dicom/dataset.js';
import { Codes } from '../../../../src/dicom/sr/coding.js';
import { ContainerContentItem, RelationshipType, TextContentItem } from '../../../../src/dicom/sr/content-items.js';
import { readSr } from '../../../../src/dicom/sr/reader.js';
import {
  buildSrDataset,
  CompletionFlag,
  checkPredecessors,
  collectEvidence,
  PreliminaryFlag,
  type SrDocumentParams,
  TYPE2_COPIED,
  VerificationFlag,
  writePart10,
} from '../../../../src/dicom/sr/sr-document.js';
import { SopClass, TransferSyntax } from '../../../../src/dicom/uids.js';
import { SrValidationError } from '../../../../src/errors.js';
import { FIXED_NOW, sibling, sourceHeader } from './sr-fixtures.js';

/**
 * The generic SR writer (highdicom sr/sop.py's role) on its own: no RadScribe policy, so every
 * series, flag and UID below is the caller's choice and must come back unchanged.
 */

const ct = sourceHeader('CT_small.dcm');
const content = new ContainerContentItem({
  name: Codes.DiagnosticImagingReport,
  templateIdentifier: '2000',
  children: [new TextContentItem({ name: Codes.Findings, relationshipType: RelationshipType.CONTAINS, value: 'x' })],
});

function params(over: Partial<SrDocumentParams> = {}): SrDocumentParams {
  return {
    sopClassUid: SopClass.EnhancedSrStorage,
    sopInstanceUid: '2.25.1001',
    seriesInstanceUid: '2.25.1002',
    seriesNumber: 42,
    seriesDescription: 'Any series',
    instanceNumber: 7,
    evidence: collectEvidence('test', [ct, sibling(ct, 1, true), ct]),
    equipment: {
      manufacturer: 'ACME',
      modelName: 'Writer',
      softwareVersions: '1.0',
      serialNumber: 'SN-9',
      deviceUid: '2.25.1003',
      purposeOfReference: Codes.ProcessingEquipment,
    },
    preliminaryFlag: PreliminaryFlag.Final,
    completionFlag: CompletionFlag.Complete,
    verificationFlag: VerificationFlag.Unverified,
    predecessors: [],
    content,
    now: FIXED_NOW,
    ...over,
  };
}

describe('collectEvidence', () => {
  it('keeps one study, de-duplicates repeated headers in first-seen order', () => {
    const ev = collectEvidence('test', [ct, sibling(ct, 1, true), ct]);
    expect(ev.studyInstanceUid).toBe(ct.StudyInstanceUID);
    expect([...ev.instances.keys()]).toEqual([ct.SOPInstanceUID, `${String(ct.SOPInstanceUID)}.1`]);
  });
  it.each<[string, unknown]>([
    ['op: sources must be a non-empty array', []],
    ['op: sources[0] must be a dataset', [null]],
    ['op: sources[1].StudyInstanceUID differs', [ct, { ...ct, StudyInstanceUID: '1.2.3' }]],
    ['op: sources[0].SeriesInstanceUID', [{ ...ct, SeriesInstanceUID: 'x' }]],
  ])('refuses %s', (message, sources) => {
    expect(() => collectEvidence('op', sources)).toThrow(SrValidationError);
    expect(() => collectEvidence('op', sources)).toThrow(message);
  });
});

describe('checkPredecessors', () => {
  it('names the operation and the argument', () => {
    expect(checkPredecessors('op', 'prior', undefined)).toEqual([]);
    expect(() => checkPredecessors('op', 'prior', {})).toThrow('op: prior must be an array');
    expect(() => checkPredecessors('op', 'prior', [{ sopClassUid: '1.2' }])).toThrow(
      'op: prior[0].sopInstanceUid must be a valid UID',
    );
  });
});

describe('buildSrDataset → writePart10 → readSr', () => {
  it('writes what the caller chose, with the patient/study modules copied from the evidence', () => {
    const doc = readSr(writePart10(buildSrDataset(params())));
    expect(doc).toMatchObject({
      transferSyntaxUid: TransferSyntax.ExplicitVrLittleEndian,
      sopClassUid: SopClass.EnhancedSrStorage,
      sopInstanceUid: '2.25.1001',
      seriesInstanceUid: '2.25.1002',
      studyInstanceUid: ct.StudyInstanceUID,
      modality: 'SR',
      seriesNumber: 42,
      seriesDescription: 'Any series',
      instanceNumber: 7,
      manufacturer: 'ACME',
      deviceSerialNumber: 'SN-9',
      contributingDeviceUids: ['2.25.1003'],
      preliminaryFlag: 'FINAL',
      completionFlag: 'COMPLETE',
      completionFlagDescription: undefined,
      verificationFlag: 'UNVERIFIED',
      verifyingObserverCount: 0,
      templateIdentifier: '2000',
    });
    expect(doc.currentRequestedProcedureEvidence).toHaveLength(2);
    const ds = parsePart10(writePart10(buildSrDataset(params()))).dataset;
    for (const kw of TYPE2_COPIED) expect(ds[kw] ?? '').toEqual(ct[kw] ?? '');
  });
  it('writes Completion Flag Description and the Predecessor Documents Sequence only when asked', () => {
    const pred = {
      sopClassUid: SopClass.ComprehensiveSrStorage,
      sopInstanceUid: '2.25.5',
      seriesInstanceUid: '2.25.6',
      studyInstanceUid: '2.25.7',
    };
    const ds = buildSrDataset(
      params({ completionFlag: CompletionFlag.Partial, completionFlagDescription: 'half', predecessors: [pred] }),
    );
    const doc = readSr(writePart10(ds));
    expect(doc.completionFlag).toBe('PARTIAL');
    expect(doc.completionFlagDescription).toBe('half');
    expect(doc.predecessorDocuments).toEqual([pred]);
    // COMPLETE drops a description; no predecessors, no sequence.
    const full = buildSrDataset(params({ completionFlagDescription: 'ignored' }));
    expect(full.CompletionFlagDescription).toBeUndefined();
    expect(full.PredecessorDocumentsSequence).toBeUndefined();
  });
  it('writePart10 refuses a dataset without valid SOP UIDs', () => {
    expect(() => writePart10({ SOPClassUID: 'x', SOPInstanceUID: '2.25.1' })).toThrow(SrValidationError);
  });
});
