import { TransferSyntax } from '../../../src/dicom/uids.js';
import { DicomwebError, ErrorCode } from '../../../src/errors.js';
import {
  isDecodableTransferSyntax,
  isNegotiationRefusal,
  ORIGINAL_TRANSFER_SYNTAX,
  TRANSCODE_TARGET,
  transcodeTargetFor,
  transferSyntaxLadder,
} from '../../../src/pacs/transfer-syntax-negotiation.js';

/** [REQ-PACS-TS] WADO-RS transfer syntax negotiation policy (PS3.18 §8.7.3.5.2), pure. */
describe('transfer syntax negotiation', () => {
  const EVLE = TransferSyntax.ExplicitVrLittleEndian;

  it('asks for the original first, then Explicit VR LE, then no parameter', () => {
    expect(transferSyntaxLadder()).toEqual(['*', EVLE, undefined]);
    expect(transferSyntaxLadder('*')).toEqual(['*', EVLE, undefined]);
  });

  it('puts an operator-configured syntax first and keeps the fallbacks, without duplicates', () => {
    expect(transferSyntaxLadder(TransferSyntax.Jpeg2000Lossless)).toEqual([
      TransferSyntax.Jpeg2000Lossless,
      '*',
      EVLE,
      undefined,
    ]);
    // The old shipped behaviour (always Explicit VR LE) now falls back to the original.
    expect(transferSyntaxLadder(EVLE)).toEqual([EVLE, '*', undefined]);
  });

  it.each([
    TransferSyntax.ImplicitVrLittleEndian,
    TransferSyntax.ExplicitVrLittleEndian,
    TransferSyntax.ExplicitVrBigEndian,
    TransferSyntax.DeflatedExplicitVrLittleEndian,
    TransferSyntax.JpegBaseline,
    TransferSyntax.JpegExtended,
    TransferSyntax.JpegSpectralSelectionNonHierarchical,
    TransferSyntax.JpegFullProgressionNonHierarchical,
    TransferSyntax.JpegLossless,
    TransferSyntax.JpegLosslessSv1,
    TransferSyntax.JpegLsLossless,
    TransferSyntax.JpegLsNearLossless,
    TransferSyntax.Jpeg2000Lossless,
    TransferSyntax.Jpeg2000,
    TransferSyntax.HtJpeg2000Lossless,
    TransferSyntax.RleLossless,
  ])('%s is decodable here: kept as the PACS holds it', (ts) => {
    expect(isDecodableTransferSyntax(ts)).toBe(true);
    expect(transcodeTargetFor(ts, ORIGINAL_TRANSFER_SYNTAX)).toBeUndefined();
  });

  it.each([
    '1.2.840.10008.1.2.4.54', // JPEG spectral selection, processes 7 & 9 (retired): no decoder here
    TransferSyntax.JpegXl,
    TransferSyntax.JpegXlLossless,
    TransferSyntax.JpegXlJpegRecompression,
    '1.2.840.10008.1.2.4.100', // MPEG2: no decoder here
  ])('%s is not decodable here: a transcoded copy is asked for', (ts) => {
    expect(isDecodableTransferSyntax(ts)).toBe(false);
    expect(transcodeTargetFor(ts, ORIGINAL_TRANSFER_SYNTAX)).toBe(TRANSCODE_TARGET);
    expect(transcodeTargetFor(ts, undefined)).toBe(EVLE);
  });

  it('never transcodes what an operator asked for by UID', () => {
    expect(
      transcodeTargetFor(
        TransferSyntax.JpegFullProgressionNonHierarchical,
        TransferSyntax.JpegFullProgressionNonHierarchical,
      ),
    ).toBeUndefined();
  });

  it.each([
    [400, true],
    [406, true],
    [415, true],
    [500, true],
    [501, true],
    [401, false],
    [403, false],
    [404, false],
    [503, false],
    [undefined, false],
  ])('HTTP %s is a negotiation refusal: %s', (status, refusal) => {
    const err = new DicomwebError(ErrorCode.PacsRejected, 'GET', 'http://pacs/studies/1', status, 'x');
    expect(isNegotiationRefusal(err)).toBe(refusal);
  });

  it('only a DicomwebError can be a refusal', () => {
    expect(isNegotiationRefusal(Object.assign(new Error('x'), { status: 406 }))).toBe(false);
  });
});
