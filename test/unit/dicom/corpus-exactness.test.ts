import { execFileSync, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { type Part10Instance, parseDicomFile, parsePart10 } from '../../../src/dicom/dataset.js';
import { getFrames } from '../../../src/dicom/frames.js';
import { type DecodedFrame, decodeFrame } from '../../../src/dicom/pixel-decoder.js';
import { DicomError, ErrorCode } from '../../../src/errors.js';
import { type CorpusRow, corpusPath, readCorpusManifest } from './corpus-manifest.js';

/**
 * Every image in test/fixtures/corpus against its independent reference decode (MANIFEST.tsv,
 * `ref_values_sha256`, made with DCMTK 3.6.7 / GDCM 3.0.21, see the corpus README). Lossless files
 * must be bit-exact. Lossy files must be exact or, when not, within LOSSY_TOLERANCE of a DCMTK
 * decode made at test time. Every other file is named below with the typed error it must give, so
 * that a regression (a file that stops decoding, or a new silent failure) cannot hide.
 */

const ROWS = readCorpusManifest();
const load = (row: CorpusRow): Part10Instance => parseDicomFile(readFileSync(corpusPath(row.file)));

/**
 * Largest allowed |ours − DCMTK| per sample for lossy syntaxes, and why (corpus README "Lossy data"):
 * JPEG .50/.51 IDCT, upsampling and YCbCr rounding are implementation-defined (ITU T.81 A.3.3 only
 * bounds IDCT accuracy): 2 grey levels at 8 bits, 8 at 12 bits (same relative error); JPEG 2000
 * irreversible .91 / HTJ2K .203 use a floating-point 9/7 wavelet and ICT: 1. JPEG-LS near-lossless
 * (.81) is fully specified (ITU T.87), so it must be exact, as must every lossless syntax.
 */
const LOSSY_TOLERANCE: Readonly<Record<string, (bitsStored: number) => number>> = {
  '1.2.840.10008.1.2.4.50': () => 2,
  '1.2.840.10008.1.2.4.51': (bs) => (bs > 8 ? 8 : 2),
  // Retired spectral selection / full progression (ITU T.81 Annex G): the same DCT as .51.
  '1.2.840.10008.1.2.4.53': (bs) => (bs > 8 ? 8 : 2),
  '1.2.840.10008.1.2.4.55': (bs) => (bs > 8 ? 8 : 2),
  '1.2.840.10008.1.2.4.81': () => 0,
  '1.2.840.10008.1.2.4.91': () => 1,
  '1.2.840.10008.1.2.4.203': () => 1,
};

/** Files no decoder here handles: a DicomError(dicom-unsupported) whose message names the transfer syntax. */
const EXPECTED_UNSUPPORTED: ReadonlyMap<string, string> = new Map([
  // JPEG XL (PS3.5 §8.2.15, 2024): no Node decoder; DCMTK 3.6.7 / GDCM 3.0.21 cannot read it either.
  ['compressed/US_multiframe_jpegxl.dcm', '1.2.840.10008.1.2.4.111'],
]);

/** Files that must fail with DicomError(dicom-invalid); the pattern is part of the message. */
const EXPECTED_INVALID: ReadonlyMap<string, RegExp> = new Map([
  // libdicom fixtures whose fragments are dummy bytes, not J2K (corpus README).
  [
    'compressed/generated_encapsulated_defined_bot_2_to_1.dcm',
    /cannot decode frame \(transfer syntax 1\.2\.840\.10008\.1\.2\.4\.90\)/,
  ],
  [
    'compressed/generated_encapsulated_defined_bot_2_to_2.dcm',
    /cannot decode frame \(transfer syntax 1\.2\.840\.10008\.1\.2\.4\.90\)/,
  ],
  [
    'compressed/generated_encapsulated_empty_bot_2_to_1.dcm',
    /cannot decode frame \(transfer syntax 1\.2\.840\.10008\.1\.2\.4\.90\)/,
  ],
  // Readable headers without Pixel Data (charset and edge-case files trimmed upstream).
  ['charset/chrJapMulti.dcm', /no Pixel Data/],
  ['charset/chrJapMultiExplicitIR6.dcm', /no Pixel Data/],
  ['charset/chrKoreanMulti.dcm', /no Pixel Data/],
  ['charset/chrSQEncoding.dcm', /no Pixel Data/],
  ['charset/chrSQEncoding1.dcm', /no Pixel Data/],
  ['charset/empty_charset_LEI.dcm', /no Pixel Data/],
  ['edge/ExplVR_LitEndNoMeta.dcm', /no Pixel Data/],
  ['edge/no-meta-length-test.dcm', /no Pixel Data/],
  ['edge/no_meta_group_length.dcm', /no Pixel Data/],
  ['edge/no_preamble_dicm_in_data.dcm', /no Pixel Data/],
  ['edge/priv_SQ.dcm', /no Pixel Data/],
  // dcmjs 0.52 cannot walk these sequences (VR UN sequence, nested private SQ); no pixel data either.
  ['edge/UN_sequence.dcm', /unreadable DICOM data set/],
  ['edge/nested_priv_SQ.dcm', /unreadable DICOM data set/],
  // Broken on purpose.
  ['malformed/3gb-bulk-data-truncated.dcm', /Image Pixel Module/],
  ['malformed/GH177_bigendian_undefined_length.dcm', /unreadable DICOM data set/],
  [
    'malformed/JPEG2000-embedded-sequence-delimiter.dcm',
    /cannot decode frame \(transfer syntax 1\.2\.840\.10008\.1\.2\.4\.91\)/,
  ],
  ['malformed/MR_truncated.dcm', /native Pixel Data is 8130 bytes/],
  ['malformed/derived_garbage_after_meta_MR_small.dcm', /no Pixel Data/],
  ['malformed/derived_truncated_in_meta_MR_small.dcm', /unreadable DICOM data set/],
  ['malformed/derived_truncated_in_pixeldata_CT_small.dcm', /native Pixel Data is 17223 bytes/],
  ['malformed/meta_missing_tsyntax.dcm', /unreadable DICOM data set/],
  ['malformed/no_meta.dcm', /not a DICOM file/],
  ['malformed/rtplan_truncated.dcm', /unreadable DICOM data set/],
]);

/** Files that decode but have no reference (no independent decoder could make one). */
const DECODES_WITHOUT_REFERENCE: ReadonlySet<string> = new Set([
  'compressed/liver_rle.dcm', // 1-bit RLE: DCMTK, GDCM and pydicom all refuse it
  'malformed/badVR.dcm',
  'malformed/derived_trailing_garbage_CT_small.dcm',
]);

async function decodeAll(inst: Part10Instance, convertYbrToRgb: boolean): Promise<DecodedFrame[]> {
  const n = getFrames(inst).numberOfFrames;
  const out: DecodedFrame[] = [];
  for (let i = 0; i < n; i++) out.push(await decodeFrame(inst, i, { convertYbrToRgb }));
  return out;
}

/** Native 4:2:2 references keep the Y0 Y1 Cb Cr layout; re-subsample our full-resolution YBR. */
function resubsample422(f: DecodedFrame): Uint8Array {
  const n = f.rows * f.columns;
  const out = new Uint8Array(n * 2);
  for (let p = 0; p < n; p += 2) {
    out[p * 2] = f.data[p * 3] ?? 0;
    out[p * 2 + 1] = f.data[(p + 1) * 3] ?? 0;
    out[p * 2 + 2] = f.data[p * 3 + 1] ?? 0;
    out[p * 2 + 3] = f.data[p * 3 + 2] ?? 0;
  }
  return out;
}

function bytesOf(f: DecodedFrame, row: CorpusRow): Uint8Array {
  if (row.refFormat.includes('native 4:2:2')) return resubsample422(f);
  // The reference keeps signed 8-bit samples as 8-bit integers; we widen them to Int16.
  if (f.bitsAllocated === 8 && f.data instanceof Int16Array) return Int8Array.from(f.data) as unknown as Uint8Array;
  return new Uint8Array(f.data.buffer, f.data.byteOffset, f.data.byteLength);
}

function valuesHash(frames: readonly DecodedFrame[], row: CorpusRow): string {
  const h = createHash('sha256');
  for (const f of frames) {
    const b = bytesOf(f, row);
    h.update(new Uint8Array(b.buffer, b.byteOffset, b.byteLength));
  }
  return h.digest('hex');
}

const referenceRows = ROWS.filter((r) => r.refValuesSha256 !== '' && !EXPECTED_UNSUPPORTED.has(r.file));
const lossless = referenceRows.filter((r) => !r.lossy);
const lossy = referenceRows.filter((r) => r.lossy);
/** The reference is RGB when DCMTK/GDCM converted YBR (JPEG, J2K MCT); native YBR stays YBR. */
const wantsRgb = (r: CorpusRow): boolean =>
  /PI=RGB/.test(r.refFormat) || /PI=RGB/.test(r.refFormat.split(';').pop() ?? '');

describe('corpus copy', () => {
  it('every file is byte-identical to the corpus (file_sha256)', () => {
    const bad = ROWS.filter(
      (r) =>
        createHash('sha256')
          .update(readFileSync(corpusPath(r.file)))
          .digest('hex') !== r.fileSha256,
    );
    expect(bad.map((r) => r.file)).toEqual([]);
  });

  it('every file is accounted for: reference-compared, expected failure, or decodes without reference', () => {
    const known = new Set([
      ...referenceRows.map((r) => r.file),
      ...EXPECTED_UNSUPPORTED.keys(),
      ...EXPECTED_INVALID.keys(),
      ...DECODES_WITHOUT_REFERENCE,
    ]);
    expect(ROWS.filter((r) => !known.has(r.file)).map((r) => r.file)).toEqual([]);
    expect(lossless.length).toBeGreaterThanOrEqual(100);
  });
});

describe('lossless: decoded values equal the DCMTK/GDCM reference bit for bit', () => {
  it.each(lossless.map((r) => [r.file, r] as const))('%s', async (_f, row) => {
    expect(valuesHash(await decodeAll(load(row), wantsRgb(row)), row)).toBe(row.refValuesSha256);
  });
});

const DCMTK_DECODER: Readonly<Record<string, string[]>> = {
  dcmdjpeg: ['dcmdjpeg', '+px'],
  dcmdjpls: ['dcmdjpls', '+px'],
};
const hasTool = (t: string): boolean => spawnSync(t, ['--version']).status === 0;

/** max |a − b| over all samples of all frames. */
function maxAbsDiff(a: readonly DecodedFrame[], b: readonly DecodedFrame[]): number {
  let m = 0;
  a.forEach((fa, k) => {
    const fb = b[k];
    if (fb === undefined || fb.data.length !== fa.data.length) m = Number.POSITIVE_INFINITY;
    else for (let i = 0; i < fa.data.length; i++) m = Math.max(m, Math.abs((fa.data[i] ?? 0) - (fb.data[i] ?? 0)));
  });
  return m;
}

describe('lossy: within the stated tolerance of the reference decode', () => {
  it.each(lossy.map((r) => [r.file, r] as const))('%s', async (_f, row) => {
    const ours = await decodeAll(load(row), wantsRgb(row));
    if (valuesHash(ours, row) === row.refValuesSha256) return; // exact (IJG-family decoders often agree)
    const tol = LOSSY_TOLERANCE[row.transferSyntaxUid];
    expect(tol).toBeDefined();
    const tool = Object.keys(DCMTK_DECODER).find((t) => row.refMethod.startsWith(t));
    if (tool === undefined || !hasTool(tool)) {
      throw new Error(`${row.file}: not exact and no DCMTK decoder (${row.refMethod}) to measure the difference`);
    }
    const dir = mkdtempSync(path.join(tmpdir(), 'rs-lossy-'));
    try {
      const out = path.join(dir, 'ref.dcm');
      const [cmd, ...args] = DCMTK_DECODER[tool] ?? [];
      execFileSync(cmd ?? tool, [...args, corpusPath(row.file), out]);
      const ref = await decodeAll(parsePart10(readFileSync(out)), false);
      expect(maxAbsDiff(ours, ref)).toBeLessThanOrEqual(tol?.(ours[0]?.bitsStored ?? 8) ?? 0);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('files that cannot be decoded fail with a typed error', () => {
  it.each([...EXPECTED_UNSUPPORTED].map(([f, ts]) => [f, ts] as const))(
    '%s → dicom-unsupported naming %s',
    async (file, ts) => {
      const err = await decodeFrame(parseDicomFile(readFileSync(corpusPath(file))), 0).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(DicomError);
      expect((err as DicomError).code).toBe(ErrorCode.DicomUnsupported);
      expect((err as DicomError).message).toContain(ts);
    },
  );

  it.each([...EXPECTED_INVALID].map(([f, re]) => [f, re] as const))('%s → dicom-invalid %s', async (file, re) => {
    const err = await (async () => decodeFrame(parseDicomFile(readFileSync(corpusPath(file))), 0))().catch(
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(DicomError);
    expect((err as DicomError).code).toBe(ErrorCode.DicomInvalid);
    expect((err as DicomError).message).toMatch(re);
  });

  it.each([...DECODES_WITHOUT_REFERENCE].map((f) => [f] as const))('%s decodes (no reference exists)', async (file) => {
    const frames = await decodeAll(parseDicomFile(readFileSync(corpusPath(file))), true);
    expect(frames.length).toBeGreaterThan(0);
  });
});

describe('parseDicomFile reads what DCMTK reads; parsePart10 stays strict for network intake', () => {
  it.each(
    [
      ['compressed/JLSL_RGB_ILV0.dcm', 'meta-repaired'], // meta without preamble / "DICM" / group length
      ['images/CR-MONO1-10-chest.dcm', 'no-meta'], // ACR-NEMA style implicit VR data set
      ['edge/OT-PAL-8-face.dcm', 'no-meta'],
      ['edge/ExplVR_LitEndNoMeta.dcm', 'no-meta'], // explicit VR detected from bytes 4–5
      ['edge/no_preamble_dicm_in_data.dcm', 'no-meta'], // "DICM" at 128 is inside the data set
      ['edge/no_meta_group_length.dcm', 'meta-repaired'],
      ['compressed/CT_small.dcm', 'part10'],
    ].filter(([f]) => ROWS.some((r) => r.file === f)),
  )('%s → %s', (file, layout) => {
    const buf = readFileSync(corpusPath(file));
    expect(parseDicomFile(buf).layout).toBe(layout);
    if (layout !== 'part10') expect(() => parsePart10(buf)).toThrow(DicomError);
  });

  it('several character sets (ISO 2022) do not block reading or pixel decoding', async () => {
    for (const f of ['charset/chrH31.dcm', 'charset/chrI2.dcm', 'compressed/J2K_pixelrep_mismatch.dcm']) {
      const inst = parsePart10(readFileSync(corpusPath(f)));
      expect(typeof inst.dataset.SOPInstanceUID).toBe('string');
      expect((await decodeFrame(inst, 0)).data.length).toBeGreaterThan(0);
    }
  });
});
