import { createHash } from 'node:crypto';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import sharp from 'sharp';
import { renderDicomFile } from '../src/cli/render.js';
import type { RenderedImage } from '../src/dicom/render.js';
import { buildMllamaInput, parseMllamaPreprocessorConfig } from '../src/dicom/tiles.js';
import { FIXTURES_DIR } from '../src/runtime-paths.js';

/**
 * Golden-tensor cases for the Mllama tiler (src/dicom/tiles.ts) against Hugging Face `MllamaImageProcessor`
 * (issue 10, "preprocessing stays exact"). The rendering is ours (PS3.4 Annex N, render.ts); what is compared is
 * what HF does after it: canvas choice, PIL bilinear resize, pad, rescale, normalise, tiling. So HF is fed the
 * 8-bit RGB image RadScribe renders, exported here as PNG; test/fixtures/tiler-golden/README.md says how the
 * references were produced from these PNGs.
 * Usage: node dist/tools/tiler-golden.js --out <dir> [--with-tensors]
 *   writes <case>.png (RGB) and cases.json; --with-tensors also writes <case>.pixel_values.f32 (the tiler's
 *   float32 [1,1,4,3,560,560], little-endian) so the generator can measure max |Δ| against HF.
 */

export const TILER_GOLDEN_DIR = path.join(FIXTURES_DIR, 'tiler-golden');

export interface TilerGoldenCase {
  readonly name: string;
  /** Path under test/fixtures/corpus. */
  readonly file: string;
  /** 0-based frame. */
  readonly frame: number;
  /** Rows [top, top + height) of the rendered image; only to reach a 3-tile canvas no corpus image has. */
  readonly cropRows?: { readonly top: number; readonly height: number };
  /** Why the case is here (photometric, tiles, resize direction). */
  readonly covers: string;
}

/**
 * 1, 2, 3 and 4 tiles; MONOCHROME1, MONOCHROME2 and colour; up- and downscaling and pad-only canvases. No
 * corpus image has the 2H < W <= 3H, H > 560 shape of a 3-tile canvas (Mllama otherwise picks 1×2 or 2×2), so
 * that case is a centre band of a real CR image.
 */
export const TILER_GOLDEN_CASES: readonly TilerGoldenCase[] = [
  {
    name: 'dx-mono1-1tile',
    file: 'images/dx_image.dcm',
    frame: 0,
    covers: 'MONOCHROME1 8-bit 211×169 → 1 tile, bilinear upscale to 560×448, pad',
  },
  {
    name: 'color-rgb-1tile',
    file: 'images/color-pl.dcm',
    frame: 0,
    covers: 'RGB planar 256×120 → 1 tile, upscale to 560×262, pad',
  },
  {
    name: 'htj2k-rgb-2tiles',
    file: 'compressed/HTJ2KLossless_08_RGB.dcm',
    frame: 0,
    covers: 'RGB 640×480 → 1×2 tiles, no resize, pad',
  },
  {
    name: 'jpegll-mono2-2tiles',
    file: 'compressed/JPEG-LL.dcm',
    frame: 0,
    covers: 'MONOCHROME2 16-bit 256×1024 → 2×1 tiles, no resize, pad',
  },
  {
    name: 'cr-mono1-3tiles',
    file: 'compressed/CR-ModalitySequenceLUT.dcm',
    frame: 0,
    cropRows: { top: 408, height: 760 },
    covers: 'MONOCHROME1 + Modality LUT Sequence, rows 408..1167 (1976×760) → 1×3 tiles (ties 1×4), downscale',
  },
  {
    name: 'cr-mono1-4tiles',
    file: 'compressed/CR-ModalitySequenceLUT.dcm',
    frame: 0,
    covers: 'MONOCHROME1 1976×1576 → 2×2 tiles, downscale to 1120×893',
  },
  {
    name: 'mg-mono2-4tiles',
    file: 'compressed/MG_GH133_jpeg_lossless.dcm',
    frame: 0,
    covers: 'MONOCHROME2 mammogram 2394×3062 → 2×2 tiles, 2.7× downscale (wide antialias support)',
  },
  {
    name: 'vl5-rgb-4tiles',
    file: 'compressed/VL5_J2KI.dcm',
    frame: 0,
    covers: 'YBR_ICT (JPEG 2000 lossy) colour 2670×3340 → 2×2 tiles, downscale to 895×1120',
  },
];

/** The rendered 8-bit image of a case: what the tiler receives (1 or 3 channels). */
export async function renderGoldenCase(c: TilerGoldenCase): Promise<RenderedImage> {
  const img = await renderDicomFile(path.join(FIXTURES_DIR, 'corpus', c.file), c.frame);
  if (c.cropRows === undefined) return img;
  const { top, height } = c.cropRows;
  if (top < 0 || top + height > img.height) throw new RangeError(`${c.name}: crop outside the image`);
  const row = img.width * img.channels;
  return { ...img, height, data: img.data.slice(top * row, (top + height) * row) };
}

/** Grey replicated to R = G = B (transformers `convert_to_rgb`, PIL "L" → "RGB"). */
export function toRgb(img: RenderedImage): Uint8Array {
  if (img.channels === 3) return img.data.subarray(0, img.width * img.height * 3);
  const out = new Uint8Array(img.width * img.height * 3);
  for (let i = 0; i < img.width * img.height; i++) out.fill(img.data[i] ?? 0, i * 3, i * 3 + 3);
  return out;
}

export const sha256Hex = (bytes: Uint8Array): string => createHash('sha256').update(bytes).digest('hex');

/** float32 values as little-endian bytes (numpy `<f4` `tobytes()`), for hashing. */
export function float32LeBytes(values: Float32Array): Uint8Array {
  const out = new Uint8Array(values.length * 4);
  const view = new DataView(out.buffer);
  for (let i = 0; i < values.length; i++) view.setFloat32(i * 4, values[i] ?? 0, true);
  return out;
}

async function main(argv: readonly string[]): Promise<void> {
  const outIdx = argv.indexOf('--out');
  const out = outIdx >= 0 ? argv[outIdx + 1] : undefined;
  if (out === undefined) throw new Error('usage: tiler-golden --out <dir> [--with-tensors]');
  const withTensors = argv.includes('--with-tensors');
  mkdirSync(out, { recursive: true });
  const cfg = parseMllamaPreprocessorConfig(
    JSON.parse(readFileSync(path.join(FIXTURES_DIR, 'models', 'tiny-mllama', 'preprocessor_config.json'), 'utf8')),
  );
  const cases = [];
  for (const c of TILER_GOLDEN_CASES) {
    const img = await renderGoldenCase(c);
    const rgb = toRgb(img);
    await sharp(Buffer.from(rgb.buffer, rgb.byteOffset, rgb.length), {
      raw: { width: img.width, height: img.height, channels: 3 },
    })
      .png()
      .toFile(path.join(out, `${c.name}.png`));
    if (withTensors) {
      const m = buildMllamaInput(img, cfg);
      writeFileSync(path.join(out, `${c.name}.pixel_values.f32`), float32LeBytes(m.pixelValues));
    }
    cases.push({ ...c, width: img.width, height: img.height, renderedRgbSha256: sha256Hex(rgb) });
  }
  writeFileSync(path.join(out, 'cases.json'), `${JSON.stringify(cases, null, 2)}\n`);
  process.stdout.write(`wrote ${cases.length} cases to ${out}\n`);
}

if (require.main === module) {
  main(process.argv.slice(2)).catch((err: unknown) => {
    process.stderr.write(`tiler-golden: ${String(err)}\n`);
    process.exitCode = 1;
  });
}
