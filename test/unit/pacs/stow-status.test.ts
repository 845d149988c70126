import { FailureReason } from '../../../src/ingest/types.js';
import { getNumber, getSequence, Tag } from '../../../src/pacs/dicom-json.js';
import { MultipartFailure } from '../../../src/pacs/multipart.js';
import { type PartResult, stowResponse, stowStatus } from '../../../src/pacs/stow-router.js';

/** PS3.18 §10.5.3 (Table 10.5.3-1) status of a Store Instances answer, issue 9. */
const ok: PartResult = {
  ok: true,
  sopClassUid: '1.2.840.10008.5.1.4.1.1.7',
  sopInstanceUid: '2.25.1',
  studyInstanceUid: '2.25.2',
  seriesInstanceUid: '2.25.3',
};
const bad = (failureReason: FailureReason): PartResult => ({ ok: false, failureReason });

describe('stowStatus', () => {
  test('200 all stored, 202 some, 409 none because of the instances', () => {
    expect(stowStatus([ok, ok])).toBe(200);
    expect(stowStatus([ok, bad(FailureReason.CannotUnderstand)])).toBe(202);
    expect(stowStatus([bad(FailureReason.CannotUnderstand), bad(FailureReason.DataSetDoesNotMatchSopClass)])).toBe(409);
  });
  test('framing failures: 400 / 413 when nothing was stored, 202 when something was', () => {
    expect(stowStatus([bad(FailureReason.CannotUnderstand)], MultipartFailure.Truncated)).toBe(400);
    expect(stowStatus([bad(FailureReason.CannotUnderstand)], MultipartFailure.Malformed)).toBe(400);
    expect(stowStatus([bad(FailureReason.OutOfResources)], MultipartFailure.TotalTooLarge)).toBe(413);
    expect(stowStatus([ok, bad(FailureReason.OutOfResources)], MultipartFailure.TotalTooLarge)).toBe(202);
    expect(stowStatus([ok, bad(FailureReason.CannotUnderstand)], MultipartFailure.Truncated)).toBe(202);
  });
  test('the response lists every refused part with its Failure Reason, in order', () => {
    const body = stowResponse(
      [ok, bad(FailureReason.CannotUnderstand), bad(FailureReason.OutOfResources)],
      'http://gw/dicomweb',
      undefined,
    );
    expect(getSequence(body, Tag.FailedSOPSequence).map((i) => getNumber(i, Tag.FailureReason))).toEqual([
      0xc000, 0xa700,
    ]);
    expect(getSequence(body, Tag.ReferencedSOPSequence)).toHaveLength(1);
  });
});
