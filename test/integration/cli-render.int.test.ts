import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import sharp from 'sharp';
import { renderDicomFile } from '../../src/cli/render.js';
import { FIXTURES_DIR } from '../../src/runtime-paths.js';

/** `radscribe render` and `radscribe tiles` exactly as other tools call them (bin/radscribe after a build). */
const BIN = path.join(__dirname, '../../bin/radscribe');
const corpus = (f: string) => path.join(FIXTURES_DIR, 'corpus', f);
const run = (args: string[]) => spawnSync(BIN, args, { encoding: 'utf8', timeout: 60_000 });

describe('radscribe render / tiles', () => {
  let dir: string;
  beforeAll(() => {
    dir = mkdtempSync(path.join(tmpdir(), 'rs-cli-render-'));
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('render writes a grayscale PNG equal to the rendered frame (monochrome)', async () => {
    const out = path.join(dir, 'ct.png');
    const r = run(['render', corpus('images/CT_small.dcm'), '--out', out]);
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
    // IHDR colour type (byte 25): 0 = greyscale.
    expect(readFileSync(out)[25]).toBe(0);
    // (sharp decodes grey PNGs to sRGB; take one channel back.)
    const { data, info } = await sharp(out).extractChannel(0).raw().toBuffer({ resolveWithObject: true });
    expect([info.width, info.height, info.channels]).toEqual([128, 128, 1]);
    expect(new Uint8Array(data)).toEqual((await renderDicomFile(corpus('images/CT_small.dcm'), 0)).data);
  });

  it('render --frame N (from 1) writes an RGB PNG for colour', async () => {
    const out = path.join(dir, 'rgb.png');
    const r = run(['render', corpus('compressed/SC_rgb_rle_16bit_2frame.dcm'), '--frame', '2', '--out', out]);
    expect(r.status).toBe(0);
    expect(readFileSync(out)[25]).toBe(2); // IHDR colour type 2 = RGB
    const { data, info } = await sharp(out).raw().toBuffer({ resolveWithObject: true });
    expect(info.channels).toBe(3);
    expect(new Uint8Array(data)).toEqual(
      (await renderDicomFile(corpus('compressed/SC_rgb_rle_16bit_2frame.dcm'), 1)).data,
    );
  });

  it('fails with exit 1 and a one-line reason naming the transfer syntax', () => {
    const r = run(['render', corpus('compressed/US_multiframe_jpegxl.dcm'), '--out', path.join(dir, 'x.png')]);
    expect(r.status).toBe(1);
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
    expect(r.stderr).toContain('1.2.840.10008.1.2.4.111');
    const bad = run(['render', corpus('images/CT_small.dcm'), '--frame', '9', '--out', path.join(dir, 'y.png')]);
    expect(bad.status).toBe(1);
    expect(bad.stderr).toMatch(/frame index 8 out of range/);
  });

  it('tiles writes tiles.json and one PNG per tile (default bundle: tiny-mllama)', async () => {
    const out = path.join(dir, 'tiles');
    const r = run(['tiles', corpus('compressed/MG_GH133_jpeg_lossless.dcm'), '--out', out]);
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
    const j = JSON.parse(readFileSync(path.join(out, 'tiles.json'), 'utf8'));
    // 2394×3062 (w×h): portrait; on 560-pixel tiles with at most 4 the 2×2 canvas needs the least
    // downscaling (transformers get_optimal_tiled_canvas), the image fits it as 1120×875.
    expect(j).toEqual({
      canvas: [1120, 1120],
      tiles: [2, 2],
      resized: [1120, 875],
      aspect_ratio_id: 6,
      aspect_ratio_mask: [1, 1, 1, 1],
    });
    for (const t of [1, 2, 3, 4]) {
      const meta = await sharp(path.join(out, `tile-${t}.png`)).metadata();
      expect([meta.width, meta.height]).toEqual([560, 560]);
    }
    expect(existsSync(path.join(out, 'tile-5.png'))).toBe(false);
  });
});
