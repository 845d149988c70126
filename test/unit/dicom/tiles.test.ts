import type { RenderedImage } from '../../../src/dicom/render.js';
import {
  buildMllamaInput,
  getImageSizeFitToCanvas,
  getOptimalTiledCanvas,
  parseMllamaPreprocessorConfig,
  resizeBilinearPil,
} from '../../../src/dicom/tiles.js';
import { ErrorCode, ModelError } from '../../../src/errors.js';

// Llama-3.2-11B-Vision-Instruct preprocessor_config.json values (model-contract.md §1.1).
const HF_CONFIG = {
  do_convert_rgb: true,
  do_normalize: true,
  do_pad: true,
  do_rescale: true,
  do_resize: true,
  image_mean: [0.48145466, 0.4578275, 0.40821073],
  image_processor_type: 'MllamaImageProcessor',
  image_std: [0.26862954, 0.26130258, 0.27577711],
  max_image_tiles: 4,
  resample: 2,
  rescale_factor: 1 / 255,
  size: { height: 560, width: 560 },
};

function grey(width: number, height: number, fill: (x: number, y: number) => number): RenderedImage {
  const data = new Uint8Array(width * height);
  for (let y = 0; y < height; y++) for (let x = 0; x < width; x++) data[y * width + x] = fill(x, y);
  return { width, height, channels: 1, data };
}

describe('parseMllamaPreprocessorConfig', () => {
  it('reads the Hugging Face field names', () => {
    const cfg = parseMllamaPreprocessorConfig(HF_CONFIG);
    expect(cfg.size).toEqual({ height: 560, width: 560 });
    expect(cfg.maxImageTiles).toBe(4);
    expect(cfg.imageMean[1]).toBe(0.4578275);
    expect(cfg.rescaleFactor).toBeCloseTo(1 / 255, 12);
  });
  it('lists every problem in one ModelError', () => {
    const bad = { ...HF_CONFIG, size: { height: 0, width: 560 }, image_std: [1, 0], do_pad: 'yes', resample: 3 };
    let err: unknown;
    try {
      parseMllamaPreprocessorConfig(bad);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(ModelError);
    expect((err as ModelError).code).toBe(ErrorCode.ModelInvalid);
    for (const key of ['size.height', 'image_std', 'do_pad', 'resample']) expect((err as Error).message).toContain(key);
  });
  it('rejects do_resize=false and non-objects', () => {
    expect(() => parseMllamaPreprocessorConfig({ ...HF_CONFIG, do_resize: false })).toThrow(/do_resize/);
    expect(() => parseMllamaPreprocessorConfig(null)).toThrow(ModelError);
  });
});

describe('Mllama canvas selection: model-contract.md §1.3 worked examples', () => {
  // [W, H, canvas [h,w], tiles [h,w], resized [h,w], aspect id, mask]
  const cases: Array<[number, number, [number, number], [number, number], [number, number], number, number[]]> = [
    [512, 512, [560, 560], [1, 1], [560, 560], 1, [1, 0, 0, 0]],
    [2500, 3000, [1120, 1120], [2, 2], [1120, 933], 6, [1, 1, 1, 1]],
    [1024, 768, [1120, 1120], [2, 2], [768, 1024], 6, [1, 1, 1, 1]],
    [800, 2000, [1680, 560], [3, 1], [1400, 560], 7, [1, 1, 1, 0]],
    [4000, 1000, [560, 2240], [1, 4], [560, 2240], 4, [1, 1, 1, 1]],
    [300, 200, [560, 560], [1, 1], [373, 560], 1, [1, 0, 0, 0]],
  ];
  const cfg = parseMllamaPreprocessorConfig(HF_CONFIG);

  it.each(cases)('%i×%i (W×H)', (W, H, canvas, tiles, resized, id, mask) => {
    expect(getOptimalTiledCanvas(H, W, 4, 560)).toEqual(canvas);
    expect(getImageSizeFitToCanvas(H, W, canvas[0], canvas[1], 560)).toEqual(resized);
    const out = buildMllamaInput(
      grey(W, H, (x, y) => (x + y) & 255),
      cfg,
    );
    expect(out.canvas).toEqual(canvas);
    expect(out.tiles).toEqual(tiles);
    expect(out.resized).toEqual(resized);
    expect(out.aspectRatioId).toBe(id);
    expect(out.aspectRatioMask).toEqual(mask);
    expect(out.dims).toEqual([1, 1, 4, 3, 560, 560]);
    expect(out.pixelValues.length).toBe(4 * 3 * 560 * 560);
  });
});

describe('buildMllamaInput values', () => {
  const cfg = parseMllamaPreprocessorConfig(HF_CONFIG);
  const plane = 560 * 560;
  const norm = (v: number, c: number): number =>
    Math.fround(
      Math.fround(Math.fround(v / 255) - Math.fround(cfg.imageMean[c] ?? 0)) / Math.fround(cfg.imageStd[c] ?? 1),
    );

  it('unused tiles are exactly 0.0 and padding is -mean/std', () => {
    // 300×200 → resized 373×560 (h×w) on one 560×560 tile: rows 373.. are padding.
    const out = buildMllamaInput(
      grey(300, 200, () => 200),
      cfg,
    );
    for (let t = 1; t < 4; t++) {
      const tile = out.pixelValues.subarray(t * 3 * plane, (t + 1) * 3 * plane);
      expect(tile.every((v) => v === 0 && !Object.is(v, -0))).toBe(true);
    }
    for (let c = 0; c < 3; c++) {
      const padded = out.pixelValues[c * plane + 400 * 560 + 10];
      expect(padded).toBe(norm(0, c));
      expect(padded).toBeCloseTo([-1.79226, -1.7521, -1.48022][c] ?? 0, 4);
      // A constant image stays constant through the resize: the image area holds norm(200).
      expect(out.pixelValues[c * plane + 100 * 560 + 300]).toBe(norm(200, c));
      expect(out.pixelValues[c * plane + 372 * 560 + 559]).toBe(norm(200, c));
    }
  });

  it('tiles are row-major over the canvas and grey is replicated to 3 channels', () => {
    // 1024×768 grey, no resize: pixel (x, y) lands in tile r = floor(y/560), c = floor(x/560).
    const img = grey(1024, 768, (x, y) => (x * 7 + y * 3) & 255);
    const out = buildMllamaInput(img, cfg);
    const probe = (x: number, y: number, c: number): number | undefined => {
      const t = Math.floor(y / 560) * 2 + Math.floor(x / 560);
      return out.pixelValues[(t * 3 + c) * plane + (y % 560) * 560 + (x % 560)];
    };
    for (const [x, y] of [
      [0, 0],
      [600, 10],
      [10, 600],
      [1023, 767],
    ] as const) {
      for (let c = 0; c < 3; c++) expect(probe(x, y, c)).toBe(norm((x * 7 + y * 3) & 255, c));
    }
    // Right of the image inside tile (0,1): padding.
    expect(probe(1100, 5, 0)).toBe(norm(0, 0));
  });

  it('RGB input keeps channels apart', () => {
    const data = new Uint8Array(600 * 600 * 3);
    for (let i = 0; i < 600 * 600; i++) data.set([255, 0, 128], i * 3);
    const out = buildMllamaInput({ width: 600, height: 600, channels: 3, data }, cfg);
    expect(out.tiles).toEqual([2, 2]);
    expect(out.resized).toEqual([600, 600]);
    expect(out.pixelValues[0]).toBe(norm(255, 0));
    expect(out.pixelValues[plane]).toBe(norm(0, 1));
    expect(out.pixelValues[2 * plane]).toBe(norm(128, 2));
  });
});

describe('resizeBilinearPil (Pillow Resample.c semantics)', () => {
  it('is the identity when the size is unchanged', () => {
    const src = Uint8Array.from({ length: 5 * 4 * 3 }, (_, i) => (i * 37) & 255);
    expect(Array.from(resizeBilinearPil(src, 5, 4, 3, 5, 4))).toEqual(Array.from(src));
  });

  it('keeps a constant image constant (coefficients are normalised)', () => {
    const src = new Uint8Array(97 * 31).fill(173);
    for (const [w, h] of [
      [13, 7],
      [200, 90],
      [97, 5],
    ] as const) {
      const out = resizeBilinearPil(src, 97, 31, 1, w, h);
      expect(out.length).toBe(w * h);
      expect(out.every((v) => v === 173)).toBe(true);
    }
  });

  it('4→2 downscale of a ramp widens the triangle filter (antialias)', () => {
    // scale 2 → support 2. Output 0: centre 1, taps x=0,1,2 with filter((x-1+0.5)/2) = .75,.75,.25 → /1.75.
    // (0*3 + 64*3 + 128)/7 = 45.71 → 46. Output 1: centre 3, taps x=1,2,3 weights .25,.75,.75 →
    // (64 + 128*3 + 192*3)/7 = 146.29 → 146. A non-antialiased bilinear would give 32 and 160.
    const out = resizeBilinearPil(Uint8Array.from([0, 64, 128, 192]), 4, 1, 1, 2, 1);
    expect(Array.from(out)).toEqual([46, 146]);
    // Same along the vertical axis.
    const col = resizeBilinearPil(Uint8Array.from([0, 64, 128, 192]), 1, 4, 1, 1, 2);
    expect(Array.from(col)).toEqual([46, 146]);
  });

  it('2→4 upscale uses support 1 and clamps at the edges', () => {
    // centres .25,.75,1.25,1.75: edge outputs see one tap (→ the edge value); inner ones .75/.25 mixes.
    expect(Array.from(resizeBilinearPil(Uint8Array.from([0, 100]), 2, 1, 1, 4, 1))).toEqual([0, 25, 75, 100]);
  });

  it('rounds to uint8 after the horizontal pass, before the vertical pass', () => {
    // 2×2 [[0,1],[1,2]] → 1×1. Horizontal: row means 0.5→1 (fixed-point round half up), 1.5→2;
    // vertical mean of 1 and 2 = 1.5 → 2. Without the intermediate rounding it would be 1 (1.0+0.5 → 1).
    expect(Array.from(resizeBilinearPil(Uint8Array.from([0, 1, 1, 2]), 2, 2, 1, 1, 1))).toEqual([2]);
  });
});
