import { readFileSync } from 'node:fs';
import path from 'node:path';
import sharp from 'sharp';
import { parseDicomFile } from '../dicom/dataset.js';
import { decodeFrame } from '../dicom/pixel-decoder.js';
import { type RenderedImage, renderFrame } from '../dicom/render.js';
import { normalizeErrorString } from '../errors.js';
import { type Args, type CliCommand, intFlag, requiredFlag, UsageError } from './args.js';

/**
 * `radscribe render <file.dcm> [--frame N] --out <file.png>`: the 8-bit image the tiler receives
 * (grayscale PNG for monochrome, RGB PNG for colour). Frame N counts from 1. Other tools call this:
 * exit 0, or 1 with a one-line reason on stderr.
 */

/** Parse (leniently, as an operator's file), decode and render one frame (0-based). */
export async function renderDicomFile(file: string, frameIndex: number): Promise<RenderedImage> {
  const inst = parseDicomFile(readFileSync(file));
  const frame = await decodeFrame(inst, frameIndex);
  return renderFrame(inst.dataset, frame, frameIndex);
}

export async function writePng(image: RenderedImage, out: string): Promise<void> {
  await sharp(Buffer.from(image.data.buffer, image.data.byteOffset, image.width * image.height * image.channels), {
    raw: { width: image.width, height: image.height, channels: image.channels },
  })
    // Grey stays one channel (PNG colour type 0); sharp would otherwise promote it to sRGB.
    .toColourspace(image.channels === 1 ? 'b-w' : 'srgb')
    .png()
    .toFile(out);
}

/** One line, for stderr: DICOM errors can quote multi-line codec messages. */
export function oneLine(err: unknown): string {
  return normalizeErrorString(err).replace(/\s*\n\s*/g, ' ');
}

export function inputFile(args: Args, command: string): string {
  const file = args.positional[1];
  if (file === undefined) throw new UsageError(`${command}: missing <file.dcm>`);
  return path.resolve(file);
}

async function cmdRender(args: Args): Promise<number> {
  const file = inputFile(args, 'render');
  const out = requiredFlag(args, 'out');
  const frame = intFlag(args, 'frame', 1);
  try {
    await writePng(await renderDicomFile(file, frame - 1), path.resolve(out));
    return 0;
  } catch (err) {
    process.stderr.write(`radscribe render: ${oneLine(err)}\n`);
    return 1;
  }
}

export const renderCommand: CliCommand = {
  name: 'render',
  usage: ['render <file.dcm> [--frame N] --out <file.png>'],
  run: cmdRender,
};
