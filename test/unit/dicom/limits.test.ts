import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { readPart10Header } from '../../../src/dicom/header-reader.js';
import { checkPart10Limits } from '../../../src/dicom/instance-limits.js';
import {
  checkFrameGeometry,
  checkInflation,
  DEFAULT_DICOM_LIMITS,
  DicomLimitError,
  dicomLimits,
  isDicomLimitError,
  LimitViolation,
  measureInflated,
  RESOURCE_VIOLATIONS,
} from '../../../src/dicom/limits.js';
import { ErrorCode, errorCodeOf, RETRYABLE_CODES, toHttpStatus } from '../../../src/errors.js';
import { readReceivedHeader } from '../../../src/ingest/received-header.js';
import {
  deepSequences,
  deflateBomb,
  FIXTURE_DIR,
  hostileInputs,
  manyElements,
  validInstance,
} from '../../support/hostile-corpus.js';

async function* chunks(buf: Uint8Array, size = 4096): AsyncGenerator<Uint8Array> {
  for (let i = 0; i < buf.byteLength; i += size) yield buf.subarray(i, i + size);
}

async function violationOf(p: Promise<unknown>): Promise<string> {
  try {
    await p;
    return 'accepted';
  } catch (err) {
    return isDicomLimitError(err) ? err.violation : `${errorCodeOf(err)}: ${(err as Error).message}`;
  }
}

describe('DicomLimitError', () => {
  it('is dicom-hostile, permanent, a 4xx, and says whether it is a bound of ours', () => {
    const deep = new DicomLimitError(LimitViolation.SequenceTooDeep, 'x');
    const frames = new DicomLimitError(LimitViolation.FrameExceedsData, 'x');
    expect(errorCodeOf(deep)).toBe(ErrorCode.DicomHostile);
    expect(RETRYABLE_CODES.has(ErrorCode.DicomHostile)).toBe(false);
    expect(toHttpStatus(ErrorCode.DicomHostile)).toBe(400);
    expect([deep.resource, frames.resource]).toEqual([true, false]);
    // Self-contradictions are the two "more than the bytes present" violations; every other is a bound.
    const contradictions = Object.values(LimitViolation).filter((v) => !RESOURCE_VIOLATIONS.has(v));
    expect(contradictions.sort()).toEqual(['element-length-exceeds-data', 'frame-exceeds-data']);
  });
});

describe('checkInflation', () => {
  const limits = dicomLimits({ maxInflatedBytes: 1000, maxInflationRatio: 10, inflationRatioFloorBytes: 100 });
  it('refuses output past the byte bound', () => {
    expect(() => checkInflation(1000, 1000, limits)).not.toThrow();
    expect(() => checkInflation(1001, 1000, limits)).toThrow(
      expect.objectContaining({ violation: 'inflated-too-large' }),
    );
  });
  it('refuses a ratio past the bound only above the floor', () => {
    expect(() => checkInflation(100, 1, limits)).not.toThrow(); // 100:1 but at the floor
    expect(() => checkInflation(101, 11, limits)).not.toThrow(); // 9.2:1
    expect(() => checkInflation(101, 10, limits)).toThrow(expect.objectContaining({ violation: 'inflation-ratio' }));
  });
});

describe('checkFrameGeometry', () => {
  const g = { rows: 512, columns: 512, samplesPerPixel: 1, bitsAllocated: 16, numberOfFrames: 4 };
  it('accepts native frames that fit the bytes present, pad byte or not', () => {
    expect(() => checkFrameGeometry(g, DEFAULT_DICOM_LIMITS, 512 * 512 * 2 * 4)).not.toThrow();
    expect(() => checkFrameGeometry(g, DEFAULT_DICOM_LIMITS, 512 * 512 * 2 * 4 + 1)).not.toThrow();
  });
  it('refuses native frames that need more bytes than present', () => {
    expect(() => checkFrameGeometry(g, DEFAULT_DICOM_LIMITS, 512 * 512 * 2 * 4 - 1)).toThrow(
      expect.objectContaining({ violation: 'frame-exceeds-data' }),
    );
  });
  it('counts YBR_FULL_422 native as two samples per pixel (PS3.3 C.7.6.3.1.2)', () => {
    const ybr = {
      ...g,
      samplesPerPixel: 3,
      bitsAllocated: 8,
      numberOfFrames: 1,
      photometricInterpretation: 'YBR_FULL_422',
    };
    expect(() => checkFrameGeometry(ybr, DEFAULT_DICOM_LIMITS, 512 * 512 * 2)).not.toThrow();
    expect(() =>
      checkFrameGeometry({ ...ybr, photometricInterpretation: 'RGB' }, DEFAULT_DICOM_LIMITS, 512 * 512 * 2),
    ).toThrow(expect.objectContaining({ violation: 'frame-exceeds-data' }));
  });
  it('packs 1-bit frames across bytes (PS3.5 §8.1.1)', () => {
    const bits = { rows: 3, columns: 3, samplesPerPixel: 1, bitsAllocated: 1, numberOfFrames: 8 };
    expect(() => checkFrameGeometry(bits, DEFAULT_DICOM_LIMITS, 9)).not.toThrow(); // 72 bits
    expect(() => checkFrameGeometry(bits, DEFAULT_DICOM_LIMITS, 8)).toThrow(
      expect.objectContaining({ violation: 'frame-exceeds-data' }),
    );
  });
  it('refuses decoded sizes past the frame and instance bounds, for encapsulated data too', () => {
    const limits = dicomLimits({ maxDecodedFrameBytes: 512 * 512 * 2, maxDecodedInstanceBytes: 512 * 512 * 2 * 3 });
    expect(() => checkFrameGeometry({ ...g, numberOfFrames: 3 }, limits)).not.toThrow();
    expect(() => checkFrameGeometry(g, limits)).toThrow(
      expect.objectContaining({ violation: 'decoded-instance-too-large' }),
    );
    expect(() => checkFrameGeometry({ ...g, rows: 513, numberOfFrames: 1 }, limits)).toThrow(
      expect.objectContaining({ violation: 'decoded-frame-too-large' }),
    );
  });
});

describe('measureInflated', () => {
  it('counts a 2 GiB bomb only up to the bound, keeping nothing', async () => {
    const bomb = deflateBomb();
    expect(bomb.bytes.byteLength).toBeLessThan(3 * 1024 * 1024);
    const dataSet = bomb.bytes.subarray(144 + bomb.bytes.readUInt32LE(140));
    const limits = dicomLimits({ maxInflatedBytes: 32 * 1024 * 1024, maxInflationRatio: 1_000_000 });
    const before = process.memoryUsage().rss;
    expect(await violationOf(measureInflated(chunks(dataSet, 65536), limits))).toBe('inflated-too-large');
    expect(process.memoryUsage().rss - before).toBeLessThan(64 * 1024 * 1024);
    // With the default ratio bound the same bomb stops at 64 MiB of output on its 1000:1 ratio.
    expect(await violationOf(measureInflated(chunks(dataSet, 65536), DEFAULT_DICOM_LIMITS))).toBe('inflation-ratio');
  });
  it('returns the length of an honest stream', async () => {
    const { deflateRawSync } = await import('node:zlib');
    expect(await measureInflated(chunks(deflateRawSync(Buffer.alloc(100_000, 1))), DEFAULT_DICOM_LIMITS)).toBe(100_000);
  });
});

describe('the header reader applies the limits', () => {
  it('accepts nesting up to maxSequenceDepth and refuses one level more (undefined and defined length)', async () => {
    for (const defined of [false, true]) {
      const ok = deepSequences(64, defined);
      const deep = deepSequences(65, defined);
      expect(await violationOf(readPart10Header(chunks(ok.bytes)))).toBe('accepted');
      expect(await violationOf(readPart10Header(chunks(deep.bytes)))).toBe('sequence-too-deep');
    }
  });
  it('counts elements, items included', async () => {
    const limits = dicomLimits({ maxElements: 1000 });
    expect(await violationOf(readPart10Header(chunks(manyElements(900).bytes), { limits }))).toBe('accepted');
    expect(await violationOf(readPart10Header(chunks(manyElements(1000).bytes), { limits }))).toBe('too-many-elements');
  });
  it('still reads every fixture of test/fixtures/dicom with the default limits', async () => {
    const files = readdirSync(FIXTURE_DIR).filter((f) => f.endsWith('.dcm'));
    const refused: string[] = [];
    for (const f of files) {
      const buf = readFileSync(path.join(FIXTURE_DIR, f));
      const v = await violationOf(readPart10Header(chunks(buf), { totalBytes: buf.byteLength }));
      if (Object.values(LimitViolation).includes(v as LimitViolation)) refused.push(`${f}: ${v}`);
    }
    expect(refused).toEqual([]);
  });
});

describe('every hostile input is refused at receipt and before decoding', () => {
  let dir: string;
  beforeAll(() => {
    dir = mkdtempSync(path.join(tmpdir(), 'rs-hostile-'));
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it.each(hostileInputs().map((h) => [h.name, h] as const))('%s', async (name, h) => {
    const file = path.join(dir, `${name}.dcm`);
    writeFileSync(file, h.bytes);
    let err: unknown;
    await readReceivedHeader(file).catch((e: unknown) => {
      err = e;
    });
    expect(errorCodeOf(err)).toBe(h.expect.errorCode);
    if (h.expect.violation) expect((err as DicomLimitError).violation).toBe(h.expect.violation);
    // The image-prep worker's pre-parse check refuses the header and inflation classes by itself.
    if (['deflate-bomb', 'depth-undefined', 'depth-defined', 'element-count', 'declared-length'].includes(name)) {
      expect(await violationOf(checkPart10Limits(h.bytes, DEFAULT_DICOM_LIMITS))).toBe(h.expect.violation);
    }
  });

  it('the valid instance passes both', async () => {
    const v = validInstance();
    const file = path.join(dir, 'valid.dcm');
    writeFileSync(file, v.bytes);
    await expect(readReceivedHeader(file)).resolves.toMatchObject({ identity: { sopInstanceUid: v.sop } });
    await expect(checkPart10Limits(v.bytes, DEFAULT_DICOM_LIMITS)).resolves.toBeUndefined();
  });
});
