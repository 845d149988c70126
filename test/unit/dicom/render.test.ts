import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { parsePart10 } from '../../../src/dicom/dataset.js';
import { type DecodedFrame, decodeFrame } from '../../../src/dicom/pixel-decoder.js';
import { applyVoiWindow, renderFrame, VoiLutFunction } from '../../../src/dicom/render.js';
import { FIXTURES_DIR } from '../../../src/runtime-paths.js';

const DIR = path.join(FIXTURES_DIR, 'dicom');

function synthetic(values: number[], pi = 'MONOCHROME2'): DecodedFrame {
  return {
    rows: 1,
    columns: values.length,
    samplesPerPixel: 1,
    bitsAllocated: 16,
    bitsStored: 16,
    highBit: 15,
    pixelRepresentation: 1,
    photometricInterpretation: pi,
    planarConfiguration: 0,
    data: Int16Array.from(values),
  };
}

describe('VOI window (PS3.3 C.11.2.1.2)', () => {
  it('LINEAR: CT abdomen window c=40 w=400 on HU after Rescale Slope/Intercept', () => {
    // Stored = HU + 1024 (intercept -1024). Window [-160, 240]: below → 0, above → 255.
    const hu = [-1000, -160.5, 40, 239.5, 1000];
    const ds = { WindowCenter: 40, WindowWidth: 400, RescaleSlope: 1, RescaleIntercept: -1024 };
    const img = renderFrame(ds, synthetic(hu.map((v) => Math.round(v + 1024))), 0);
    expect(img.channels).toBe(1);
    const expected = hu.map((x) => {
      const v = Math.round(x);
      if (v <= 40 - 0.5 - 399 / 2) return 0;
      if (v > 40 - 0.5 + 399 / 2) return 255;
      return Math.round(((v - 39.5) / 399 + 0.5) * 255);
    });
    expect(Array.from(img.data)).toEqual(expected);
    expect(img.data[0]).toBe(0);
    expect(img.data[4]).toBe(255);
    expect(img.data[2]).toBe(128); // centre maps to mid-grey
  });

  it('LINEAR_EXACT and SIGMOID follow their formulas', () => {
    expect(applyVoiWindow(100, { center: 100, width: 50, fn: VoiLutFunction.LinearExact })).toBeCloseTo(127.5, 10);
    expect(applyVoiWindow(75, { center: 100, width: 50, fn: VoiLutFunction.LinearExact })).toBe(0);
    expect(applyVoiWindow(100, { center: 100, width: 50, fn: VoiLutFunction.Sigmoid })).toBeCloseTo(127.5, 10);
    expect(applyVoiWindow(125, { center: 100, width: 50, fn: VoiLutFunction.Sigmoid })).toBeCloseTo(
      255 / (1 + Math.exp(-2)),
      10,
    );
    const ds = { WindowCenter: [100, 0], WindowWidth: [50, 1], VOILUTFunction: 'SIGMOID' };
    expect(Array.from(renderFrame(ds, synthetic([100, 125]), 0).data)).toEqual([
      128,
      Math.round(255 / (1 + Math.exp(-2))),
    ]);
  });

  it('without a window, min–max of the frame spans 0..255', () => {
    const img = renderFrame({}, synthetic([-50, 0, 50, 150]), 0);
    expect(img.data[0]).toBe(0);
    expect(img.data[3]).toBe(255);
    expect(img.data[1]).toBe(Math.round((50 / 200) * 255));
  });
});

describe('MONOCHROME1 shows brighter = denser', () => {
  it('the same pixels as MONOCHROME1 and MONOCHROME2 sum to 255 per pixel', async () => {
    const inst = parsePart10(readFileSync(path.join(DIR, 'CR_16x16_6154.dcm')));
    const f = await decodeFrame(inst, 0);
    expect(f.photometricInterpretation).toBe('MONOCHROME1');
    const m1 = renderFrame(inst.dataset, f, 0);
    const m2 = renderFrame(inst.dataset, { ...f, photometricInterpretation: 'MONOCHROME2' }, 0);
    expect(new Set(m1.data).size).toBeGreaterThan(1);
    for (let i = 0; i < m1.data.length; i++) expect((m1.data[i] ?? 0) + (m2.data[i] ?? 0)).toBe(255);
    // Presentation LUT Shape INVERSE on MONOCHROME2 has the same effect.
    const inv = renderFrame(
      { ...inst.dataset, PresentationLUTShape: 'INVERSE' },
      { ...f, photometricInterpretation: 'MONOCHROME2' },
      0,
    );
    expect(Array.from(inv.data)).toEqual(Array.from(m1.data));
  });
});

describe('colour', () => {
  it('RGB passes through; PALETTE COLOR goes through the palette LUTs', async () => {
    const rgb = parsePart10(readFileSync(path.join(DIR, 'SC_rgb_rle.dcm')));
    const f = await decodeFrame(rgb, 0);
    const img = renderFrame(rgb.dataset, f, 0);
    expect(img.channels).toBe(3);
    expect(Array.from(img.data)).toEqual(Array.from(f.data));
    const pal = parsePart10(readFileSync(path.join(DIR, 'OBXXXX1A_rle.dcm')));
    const pf = await decodeFrame(pal, 0);
    const pimg = renderFrame(pal.dataset, pf, 0);
    expect(pimg.channels).toBe(3);
    expect(pimg.data.length).toBe(pf.rows * pf.columns * 3);
    expect(new Set(pimg.data).size).toBeGreaterThan(8);
  });
});

// Cross-check against DCMTK's renderer when it is installed (it is in CI's image).
const hasDcm2pnm = (() => {
  try {
    execFileSync('dcm2pnm', ['--version'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
})();
const describeDcmtk = hasDcm2pnm ? describe : describe.skip;

function readPnm(file: string): { width: number; height: number; channels: number; data: Uint8Array } {
  const buf = readFileSync(file);
  const header: string[] = [];
  let pos = 0;
  while (header.length < 4) {
    while (/\s/.test(String.fromCharCode(buf[pos] ?? 0))) pos++;
    let tok = '';
    while (!/\s/.test(String.fromCharCode(buf[pos] ?? 32))) tok += String.fromCharCode(buf[pos++] ?? 0);
    header.push(tok);
  }
  pos++;
  const channels = header[0] === 'P6' ? 3 : 1;
  return { width: Number(header[1]), height: Number(header[2]), channels, data: new Uint8Array(buf.subarray(pos)) };
}

describeDcmtk('renderFrame agrees with dcm2pnm within 1 grey level', () => {
  const tmp = mkdtempSync(path.join(tmpdir(), 'radscribe-render-'));
  afterAll(() => rmSync(tmp, { recursive: true, force: true }));
  it.each([
    ['CT_small.dcm', '+Wm', ''],
    ['MR_small.dcm', '+Wm', ''],
    ['MR_small.dcm', '+Wi', '1'],
    ['MR_small_bigendian.dcm', '+Wi', '1'],
    ['CR_16x16_6154.dcm', '+Wi', '1'],
    ['CR_16x16_6154.dcm', '+Wm', ''],
  ])('%s %s %s', async (name, flag, arg) => {
    const file = path.join(DIR, name);
    const out = path.join(tmp, `${name}.pnm`);
    execFileSync('dcm2pnm', [flag, ...(arg ? [arg] : []), file, out], { stdio: 'ignore' });
    const ref = readPnm(out);
    const inst = parsePart10(readFileSync(file));
    const ds = flag === '+Wm' ? { ...inst.dataset, WindowCenter: undefined, WindowWidth: undefined } : inst.dataset;
    const img = renderFrame(ds, await decodeFrame(inst, 0), 0);
    expect([img.width, img.height, img.channels]).toEqual([ref.width, ref.height, ref.channels]);
    let maxDiff = 0;
    for (let i = 0; i < img.data.length; i++)
      maxDiff = Math.max(maxDiff, Math.abs((img.data[i] ?? 0) - (ref.data[i] ?? 0)));
    expect(maxDiff).toBeLessThanOrEqual(1);
  });
});
