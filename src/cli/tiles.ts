import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { buildVisionInput, ImageProcessorFamily, type VisionInput } from '../dicom/image-processor.js';
import { PACKAGE_ROOT } from '../runtime-paths.js';
import { type Args, type CliCommand, flag, intFlag, requiredFlag } from './args.js';
import { inputFile, oneLine, renderDicomFile, writePng } from './render.js';

/**
 * `radscribe tiles <file.dcm> [--frame N] [--model <bundle>] --out <dir>`: what the model's image
 * preprocessor makes of one frame, driven by the bundle's preprocessor_config.json. Writes
 * tiles.json (`canvas` [h,w], `tiles` [rows,cols], `resized` [h,w], `aspect_ratio_id`,
 * `aspect_ratio_mask`) and tile-1.png … (row-major), each the tile's pixel values de-normalised
 * back to 8 bits. A plain-family model (SigLIP, Gemma 3…) is one tile: tiles [1,1], id 1, mask [1].
 */

export const DEFAULT_TILES_MODEL = path.join(PACKAGE_ROOT, 'test', 'fixtures', 'models', 'tiny-mllama');

/** Tile t of pixel values laid out [tiles, 3, h, w], back to interleaved uint8 RGB. */
function denormaliseTile(
  pv: Float32Array,
  t: number,
  h: number,
  w: number,
  mean: readonly number[],
  std: readonly number[],
  rescale: number,
): Uint8Array {
  const plane = h * w;
  const out = new Uint8Array(plane * 3);
  for (let c = 0; c < 3; c++) {
    const base = (t * 3 + c) * plane;
    for (let i = 0; i < plane; i++) {
      const v = Math.round(((pv[base + i] ?? 0) * (std[c] ?? 1) + (mean[c] ?? 0)) / rescale);
      out[i * 3 + c] = v < 0 ? 0 : Math.min(v, 255);
    }
  }
  return out;
}

function describe(input: VisionInput): { json: Record<string, unknown>; count: number; h: number; w: number } {
  if (input.family === ImageProcessorFamily.Mllama) {
    const [, , , , th, tw] = input.dims;
    return {
      json: {
        canvas: input.canvas,
        tiles: input.tiles,
        resized: input.resized,
        aspect_ratio_id: input.aspectRatioId,
        aspect_ratio_mask: input.aspectRatioMask,
      },
      count: input.tiles[0] * input.tiles[1],
      h: th ?? 0,
      w: tw ?? 0,
    };
  }
  const [, , h, w] = input.dims;
  return {
    json: { canvas: [h, w], tiles: [1, 1], resized: input.resized, aspect_ratio_id: 1, aspect_ratio_mask: [1] },
    count: 1,
    h,
    w,
  };
}

async function cmdTiles(args: Args): Promise<number> {
  const file = inputFile(args, 'tiles');
  const outDir = path.resolve(requiredFlag(args, 'out'));
  const frame = intFlag(args, 'frame', 1);
  const bundle = path.resolve(flag(args, 'model') ?? DEFAULT_TILES_MODEL);
  try {
    const cfg = JSON.parse(readFileSync(path.join(bundle, 'preprocessor_config.json'), 'utf8')) as Record<
      string,
      unknown
    >;
    const input = buildVisionInput(await renderDicomFile(file, frame - 1), cfg);
    const { json, count, h, w } = describe(input);
    mkdirSync(outDir, { recursive: true });
    writeFileSync(path.join(outDir, 'tiles.json'), `${JSON.stringify(json, null, 2)}\n`);
    const vec = (k: string, d: number): number[] => {
      const v = cfg[k];
      return Array.isArray(v) ? (v as number[]) : typeof v === 'number' ? [v, v, v] : [d, d, d];
    };
    const mean = cfg.do_normalize === false ? [0, 0, 0] : vec('image_mean', 0);
    const std = cfg.do_normalize === false ? [1, 1, 1] : vec('image_std', 1);
    const rescale =
      cfg.do_rescale === false ? 1 : typeof cfg.rescale_factor === 'number' ? cfg.rescale_factor : 1 / 255;
    for (let t = 0; t < count; t++) {
      const data = denormaliseTile(input.pixelValues, t, h, w, mean, std, rescale);
      await writePng({ width: w, height: h, channels: 3, data }, path.join(outDir, `tile-${t + 1}.png`));
    }
    return 0;
  } catch (err) {
    process.stderr.write(`radscribe tiles: ${oneLine(err)}\n`);
    return 1;
  }
}

export const tilesCommand: CliCommand = {
  name: 'tiles',
  usage: ['tiles <file.dcm> [--frame N] [--model <bundle>] --out <dir>'],
  run: cmdTiles,
};
