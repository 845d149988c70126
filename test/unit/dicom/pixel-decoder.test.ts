import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { type Part10Instance, parsePart10 } from '../../../src/dicom/dataset.js';
import { getFrames } from '../../../src/dicom/frames.js';
import { decodeFrame } from '../../../src/dicom/pixel-decoder.js';
import { DicomError, ErrorCode } from '../../../src/errors.js';
import { FIXTURES_DIR } from '../../../src/runtime-paths.js';

const DIR = path.join(FIXTURES_DIR, 'dicom');
const load = (name: string): Part10Instance => parsePart10(readFileSync(path.join(DIR, name)));

// Reference hashes of DCMTK/GDCM decodes, normalised as the corpus README §3 describes:
// LE samples of BitsAllocated bits, colour-by-pixel, masked to BitsStored, sign-extended.
const REF = new Map(
  readFileSync(path.join(DIR, 'REF_VALUES_SHA256.tsv'), 'utf8')
    .split('\n')
    .filter((l) => l.endsWith('.dcm') || /\.dcm\t/.test(l))
    .map((l) => l.split('\t'))
    .filter((c) => c[0] !== 'file' && !c[0]?.startsWith('#'))
    .map((c) => [c[0] ?? '', c[1] ?? ''] as const),
);

async function valuesHash(inst: Part10Instance, convertYbrToRgb = false): Promise<string> {
  const h = createHash('sha256');
  const n = getFrames(inst).numberOfFrames;
  for (let i = 0; i < n; i++) {
    const f = await decodeFrame(inst, i, { convertYbrToRgb });
    h.update(new Uint8Array(f.data.buffer, f.data.byteOffset, f.data.byteLength));
  }
  return h.digest('hex');
}

describe('decodeFrame matches the DCMTK/GDCM reference decode', () => {
  const files: Array<[string, string]> = [
    ['CT_small.dcm', 'explicit VR LE, signed 16-bit'],
    ['MR_small.dcm', 'explicit VR LE'],
    ['MR_small_implicit.dcm', 'implicit VR LE'],
    ['MR_small_bigendian.dcm', 'explicit VR BE (byte swap)'],
    ['SC_rgb_small_odd.dcm', 'odd-length 8-bit RGB'],
    ['SC_rgb_small_odd_big_endian.dcm', 'explicit VR BE, 8-bit in OW (word swap)'],
    ['image_dfl.dcm', 'deflated explicit VR LE'],
    ['CR_16x16_6154.dcm', 'MONOCHROME1 12 of 16 bits'],
    ['SC_ybr_full_uncompressed.dcm', 'native YBR_FULL (kept as YBR here)'],
    ['seg_image_ct_binary_overlap.dcm', 'BitsAllocated 1, multi-frame'],
    ['MR_small_RLE.dcm', 'RLE lossless'],
    ['SC_rgb_rle.dcm', 'RLE RGB'],
    ['SC_rgb_rle_16bit_2frame.dcm', 'RLE 16-bit RGB, 2 frames'],
    ['OBXXXX1A_rle.dcm', 'RLE palette colour'],
    ['MR_small_jpeg_ls_lossless.dcm', 'JPEG-LS lossless'],
    ['JLSL_08_07_0_1F.dcm', 'JPEG-LS, BitsStored 7'],
    ['MR_small_jp2klossless.dcm', 'JPEG 2000 lossless'],
    ['derived_eot_emri_small_jpeg_2k_lossless.dcm', 'JPEG 2000 via the Extended Offset Table, 10 frames'],
    ['JPEG-LL.dcm', 'JPEG lossless SV1, 2 fragments for 1 frame'],
    ['SC_rgb_jpeg_gdcm.dcm', 'JPEG lossless SV1 RGB'],
    ['SC_rgb_dcmtk_eb_cy_n1.dcm', 'JPEG baseline YBR_FULL → RGB (same IJG code as DCMTK)'],
  ];
  it.each(files)('%s (%s)', async (name) => {
    const ref = REF.get(name);
    expect(ref).toMatch(/^[0-9a-f]{64}$/);
    expect(await valuesHash(load(name))).toBe(ref);
  });

  it('returns the typed array, header and photometric interpretation after decoding', async () => {
    const ct = await decodeFrame(load('CT_small.dcm'), 0);
    expect(ct.data).toBeInstanceOf(Int16Array);
    expect([ct.rows, ct.columns, ct.samplesPerPixel, ct.pixelRepresentation]).toEqual([128, 128, 1, 1]);
    const jpeg = await decodeFrame(load('SC_rgb_dcmtk_eb_cy_n1.dcm'), 0);
    expect(jpeg.photometricInterpretation).toBe('RGB');
    expect(jpeg.data).toBeInstanceOf(Uint8Array);
  });
});

describe('native YBR', () => {
  it('YBR_FULL_422 is upsampled; re-subsampling gives the reference 4:2:2 bytes', async () => {
    const inst = load('SC_ybr_full_422_uncompressed.dcm');
    const f = await decodeFrame(inst, 0, { convertYbrToRgb: false });
    expect(f.photometricInterpretation).toBe('YBR_FULL');
    const n = f.rows * f.columns;
    const packed = new Uint8Array(n * 2);
    for (let p = 0; p < n; p += 2) {
      packed.set([f.data[p * 3] ?? 0, f.data[(p + 1) * 3] ?? 0, f.data[p * 3 + 1] ?? 0, f.data[p * 3 + 2] ?? 0], p * 2);
    }
    expect(createHash('sha256').update(packed).digest('hex')).toBe(REF.get('SC_ybr_full_422_uncompressed.dcm'));
  });

  it('YBR_FULL and YBR_FULL_422 of the same picture convert to nearly the same RGB', async () => {
    const full = await decodeFrame(load('SC_ybr_full_uncompressed.dcm'), 0);
    const sub = await decodeFrame(load('SC_ybr_full_422_uncompressed.dcm'), 0);
    expect(full.photometricInterpretation).toBe('RGB');
    expect(sub.photometricInterpretation).toBe('RGB');
    expect(full.data.length).toBe(sub.data.length);
    // pydicom's SC_rgb test picture is made of flat colour bars, so chroma subsampling barely matters.
    let maxDiff = 0;
    for (let i = 0; i < full.data.length; i++)
      maxDiff = Math.max(maxDiff, Math.abs((full.data[i] ?? 0) - (sub.data[i] ?? 0)));
    expect(maxDiff).toBeLessThanOrEqual(3);
    // First pixel of the test pattern is pure red.
    expect(full.data[0]).toBeGreaterThan(240);
    expect(full.data[1]).toBeLessThan(15);
    expect(full.data[2]).toBeLessThan(15);
  });
});

describe('fragments → frames (PS3.5 A.4)', () => {
  it('one frame from two fragments, with and without a Basic Offset Table', () => {
    for (const name of [
      'generated_encapsulated_defined_bot_2_to_1.dcm',
      'generated_encapsulated_empty_bot_2_to_1.dcm',
    ]) {
      const src = getFrames(load(name));
      expect(src.numberOfFrames).toBe(1);
      expect(src.encapsulated).toBe(true);
      const all = src.frameBytes(0);
      expect(all.byteLength).toBe(16);
    }
  });
  it('two frames from two fragments (Number of Frames padded with NUL is still read)', () => {
    const src = getFrames(load('generated_encapsulated_defined_bot_2_to_2.dcm'));
    expect(src.numberOfFrames).toBe(2);
    expect(Array.from(src.frameBytes(0))).toEqual([0, 1, 2, 3, 4, 5, 6, 7]);
    expect(Array.from(src.frameBytes(1))).toEqual([8, 9, 10, 11, 12, 13, 14, 15]);
    expect(() => src.frameBytes(2)).toThrow(DicomError);
  });
  it('Extended Offset Table splits 10 frames; each starts with a J2K SOC marker', () => {
    const src = getFrames(load('derived_eot_emri_small_jpeg_2k_lossless.dcm'));
    expect(src.numberOfFrames).toBe(10);
    for (let i = 0; i < 10; i++) expect(Array.from(src.frameBytes(i).subarray(0, 2))).toEqual([0xff, 0x4f]);
  });
  it('native BitsAllocated 1 frames are re-aligned to bit 0', () => {
    const src = getFrames(load('seg_image_ct_binary_overlap.dcm'));
    const pm = src.pixelModule;
    expect(src.frameBytes(1).byteLength).toBe(Math.ceil((pm.rows * pm.columns) / 8));
  });
});

describe('ACR-NEMA packed 12-bit samples (BitsAllocated 12)', () => {
  const packed = (ts: string, spp = 1): Part10Instance => ({
    meta: {},
    dict: {},
    transferSyntaxUid: ts,
    dataset: {
      Rows: 2,
      Columns: 2,
      SamplesPerPixel: spp,
      BitsAllocated: 12,
      BitsStored: 12,
      HighBit: 11,
      PixelRepresentation: 0,
      PhotometricInterpretation: spp === 1 ? 'MONOCHROME2' : 'RGB',
      // 0x123 0x456 | 0x789 0xABC, two samples in three bytes, low bits first.
      PixelData: [Uint8Array.from([0x23, 0x61, 0x45, 0x89, 0xc7, 0xab, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]).buffer],
    },
  });

  it('unpacks to 16-bit samples in bit-stream order', async () => {
    const f = await decodeFrame(packed('1.2.840.10008.1.2'), 0);
    expect(Array.from(f.data)).toEqual([0x123, 0x456, 0x789, 0xabc]);
    expect([f.bitsAllocated, f.bitsStored]).toEqual([16, 12]);
  });

  it('is refused encapsulated or with several samples (no codec or layout defines it)', async () => {
    for (const inst of [packed('1.2.840.10008.1.2.4.50'), packed('1.2.840.10008.1.2', 3)]) {
      const err = await decodeFrame(inst, 0).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(DicomError);
      expect((err as DicomError).code).toBe(ErrorCode.DicomUnsupported);
      expect((err as Error).message).toMatch(/BitsAllocated 12 is supported for native single-sample/);
    }
  });
});

describe('errors', () => {
  it('an unsupported transfer syntax is dicom-unsupported and names the UID', async () => {
    // JPEG XL (PS3.5 §8.2.15): no Node decoder.
    const jxl = parsePart10(readFileSync(path.join(FIXTURES_DIR, 'corpus', 'compressed', 'US_multiframe_jpegxl.dcm')));
    const err = await decodeFrame(jxl, 0).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(DicomError);
    expect((err as DicomError).code).toBe(ErrorCode.DicomUnsupported);
    expect((err as Error).message).toContain('1.2.840.10008.1.2.4.111');
  });

  it('the retired JPEG full progression syntax (.55) decodes (ITU T.81 Annex G, libjpeg)', async () => {
    const f = await decodeFrame(load('CTImage_jpeg_progressive_55_retired.dcm'), 0);
    expect([f.rows, f.columns, f.bitsStored, f.data.length]).toEqual([512, 512, 12, 512 * 512]);
  });

  it.each([
    'derived_truncated_in_pixeldata_CT_small.dcm',
    'derived_garbage_after_meta_MR_small.dcm',
    'MR_truncated.dcm',
  ])('malformed %s gives DicomError, never a crash', async (name) => {
    const err = await (async () => decodeFrame(load(name), 0))().catch((e: unknown) => e);
    expect(err).toBeInstanceOf(DicomError);
    expect([ErrorCode.DicomInvalid, ErrorCode.DicomUnsupported]).toContain((err as DicomError).code);
  });

  it('frame index out of range is dicom-invalid', async () => {
    await expect(decodeFrame(load('MR_small.dcm'), 1)).rejects.toMatchObject({ code: ErrorCode.DicomInvalid });
  });

  it('a corrupted codestream is dicom-invalid', async () => {
    const inst = load('MR_small_jpeg_ls_lossless.dcm');
    const frames = inst.dataset.PixelData as ArrayBuffer[];
    const bad = new Uint8Array((frames[0] as ArrayBuffer).slice(0));
    bad.fill(0x5a, 40); // keep the SOI/SOF header, destroy the scan
    const broken: Part10Instance = { ...inst, dataset: { ...inst.dataset, PixelData: [bad.buffer] } };
    const err = await decodeFrame(broken, 0).catch((e: unknown) => e);
    // CharLS may also "decode" garbage; if it throws, it must be typed.
    if (err instanceof Error) expect(err).toBeInstanceOf(DicomError);
  });
});
