import { draftInstanceNumber, draftSopInstanceUid } from '../../../../src/dicom/sr/draft-policy.js';
import { buildDraftSr } from '../../../../src/dicom/sr/draft-sr.js';
import { SrValidationError } from '../../../../src/errors.js';
import { ALGORITHM, paramsFor, sourceHeader } from './sr-fixtures.js';

/**
 * [REQ-VER-03] (issue 11) Versions of a study's draft: the SOP Instance UID is derived from the
 * version as well as the input set, so version N+1 is a new document even on the same inputs, while
 * a retry of one version re-sends the same UID (dicom-sr-and-audit.md §4); version 1 derives as it
 * did before versions existed. The predecessor goes into (0040,A360) as a Hierarchical SOP Instance
 * Reference (PS3.3 C.17.2.1, Table C.17-3a) and is never the draft itself.
 */
const ct = sourceHeader('CT_small.dcm');
const study = String(ct.StudyInstanceUID);
const inputs = [String(ct.SOPInstanceUID)];

describe('draft SR versions', () => {
  it('version 1 is the UID without a version; every later version has a UID of its own', () => {
    const v1 = draftSopInstanceUid(study, ALGORITHM.deviceUid, inputs);
    expect(draftSopInstanceUid(study, ALGORITHM.deviceUid, inputs, 'report', 1)).toBe(v1);
    const later = [2, 3, 4].map((v) => draftSopInstanceUid(study, ALGORITHM.deviceUid, inputs, 'report', v));
    expect(new Set([v1, ...later]).size).toBe(4);
    // Deterministic: a retry of version 2 re-sends the same instance.
    expect(draftSopInstanceUid(study, ALGORITHM.deviceUid, inputs, 'report', 2)).toBe(later[0]);
    // Profiles stay apart within a version.
    expect(draftSopInstanceUid(study, ALGORITHM.deviceUid, inputs, 'air', 2)).not.toBe(later[0]);
    expect(() => draftSopInstanceUid(study, ALGORITHM.deviceUid, inputs, 'report', 0)).toThrow(SrValidationError);
    expect(() => draftSopInstanceUid(study, ALGORITHM.deviceUid, inputs, 'report', 1.5)).toThrow(SrValidationError);
    expect([1, 2, 3].map((v) => draftInstanceNumber(v))).toEqual([1, 2, 3]);
  });

  it('a version-2 draft on the same inputs: new UID, same study and series, Instance Number 2, predecessor in (0040,A360)', () => {
    const base = paramsFor([ct], ['finding']);
    const v1 = buildDraftSr(base);
    expect(v1.studyVersion).toBe(1);
    const pred = {
      studyInstanceUid: v1.studyInstanceUid,
      seriesInstanceUid: v1.seriesInstanceUid,
      sopClassUid: String(v1.dataset.SOPClassUID),
      sopInstanceUid: v1.sopInstanceUid,
    };
    const v2 = buildDraftSr({ ...base, studyVersion: 2, predecessor: [pred] });
    expect(v2.sopInstanceUid).not.toBe(v1.sopInstanceUid);
    expect(v2.studyInstanceUid).toBe(v1.studyInstanceUid);
    expect(v2.seriesInstanceUid).toBe(v1.seriesInstanceUid);
    expect(v2.dataset.InstanceNumber).toBe(2);
    expect(v1.dataset.InstanceNumber).toBe(1);
    expect(v2.dataset.PredecessorDocumentsSequence).toEqual([
      {
        StudyInstanceUID: pred.studyInstanceUid,
        ReferencedSeriesSequence: [
          {
            SeriesInstanceUID: pred.seriesInstanceUid,
            ReferencedSOPSequence: [
              { ReferencedSOPClassUID: pred.sopClassUid, ReferencedSOPInstanceUID: pred.sopInstanceUid },
            ],
          },
        ],
      },
    ]);
  });

  it('refuses a bad version and a draft naming itself as its predecessor', () => {
    const base = paramsFor([ct], ['finding']);
    expect(() => buildDraftSr({ ...base, studyVersion: 0 })).toThrow(SrValidationError);
    const self = buildDraftSr({ ...base, studyVersion: 2 });
    expect(() =>
      buildDraftSr({
        ...base,
        studyVersion: 2,
        predecessor: [
          {
            studyInstanceUid: self.studyInstanceUid,
            seriesInstanceUid: self.seriesInstanceUid,
            sopClassUid: String(self.dataset.SOPClassUID),
            sopInstanceUid: self.sopInstanceUid,
          },
        ],
      }),
    ).toThrow(/predecessor must not be the draft itself/);
  });
});
