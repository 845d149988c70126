import { readFileSync } from 'node:fs';
import path from 'node:path';
import { type NaturalDataset, parsePart10 } from '../dicom/dataset.js';
import { errorCodeOf, normalizeErrorString } from '../errors.js';
import type { ImageInput } from '../inference/image-input.js';
import { type DescribeResult, InferenceClient } from '../inference/inference-client.js';
import { type ImageCandidate, selectFrames } from '../pipeline/frame-selection.js';
import { ImagePrepClient } from '../pipeline/image-prep-client.js';
import { type Args, boolFlag, type CliCommand, configFrom, flag, intFlag, UsageError } from './args.js';

/**
 * `radscribe describe <file.dcm>... [--model <bundle>] [--json]` (issue 4): runs the model on the frames the
 * configured selection policy picks from the given files and prints the text. `--json` prints one JSON array,
 * one object per described image. The model defaults to config `model.bundle` (out of the box the bundled
 * test fixture, whose output is meaningless).
 */

interface FileCandidate extends ImageCandidate {
  readonly filePath: string;
}

export interface DescribeJsonEntry {
  file: string;
  /** 1-based frame number, as DICOM numbers frames (Referenced Frame Number). */
  frame: number;
  text: string;
  tokens: number[];
  stopReason: string;
  timings: { preprocessMs: number; visionEncoderMs: number; prefillMs: number; decodeMs: number[] };
  provider: string;
  model: { path: string; name: string; version: string; fixture: boolean; label?: string };
}

function num(v: unknown): number | undefined {
  const n = typeof v === 'string' ? Number(v) : v;
  return typeof n === 'number' && Number.isFinite(n) ? n : undefined;
}

function candidateOf(filePath: string, header: NaturalDataset): FileCandidate {
  const str = (v: unknown) => (typeof v === 'string' ? v : '');
  return {
    filePath,
    sopInstanceUid: str(header.SOPInstanceUID) || filePath,
    seriesInstanceUid: str(header.SeriesInstanceUID) || filePath,
    sopClassUid: str(header.SOPClassUID),
    modality: typeof header.Modality === 'string' ? header.Modality : undefined,
    instanceNumber: num(header.InstanceNumber),
    numberOfFrames: num(header.NumberOfFrames) ?? 1,
    // Image Pixel Module (PS3.3 C.7.6.3): Rows/Columns are Type 1 wherever pixel data exists.
    hasPixelData: num(header.Rows) !== undefined && num(header.Columns) !== undefined,
  };
}

async function run(args: Args): Promise<number> {
  const files = args.positional.slice(1);
  if (files.length === 0) throw new UsageError('describe: give at least one DICOM file');
  const cfg = configFrom(args);
  const bundleDir = path.resolve(flag(args, 'model') ?? cfg.model.bundle);
  const maxNewTokens = intFlag(args, 'max-new-tokens', cfg.model.maxNewTokens);
  const json = boolFlag(args, 'json');
  let failed = 0;

  const candidates: FileCandidate[] = [];
  for (const f of files) {
    try {
      candidates.push(candidateOf(f, parsePart10(readFileSync(f), { untilPixelData: true }).dataset));
    } catch (err: unknown) {
      failed++;
      process.stderr.write(`radscribe describe: ${f}: ${normalizeErrorString(err)} (${errorCodeOf(err)})\n`);
    }
  }
  // Report in the order the files were given (selectFrames groups by modality kind).
  const order = new Map(candidates.map((c, i) => [c, i]));
  const selected = selectFrames(candidates, cfg.selection).sort(
    (a, b) => (order.get(a.candidate) ?? 0) - (order.get(b.candidate) ?? 0) || a.frameIndex - b.frameIndex,
  );
  for (const c of candidates) {
    if (!c.hasPixelData) process.stderr.write(`radscribe describe: ${c.filePath}: no pixel data, skipped\n`);
  }

  const client = await InferenceClient.start({
    bundleDir,
    executionProviders: cfg.model.executionProviders,
    intraOpNumThreads: cfg.model.intraOpNumThreads,
  });
  const prep = new ImagePrepClient();
  const out: DescribeJsonEntry[] = [];
  try {
    for (const sel of selected) {
      const file = sel.candidate.filePath;
      try {
        const t0 = performance.now();
        // The image-prep worker builds whichever input the bundle's preprocessor_config.json names.
        const input: ImageInput = (await prep.prepare(file, sel.frameIndex, client.preprocessorConfig)).input;
        const preprocessMs = performance.now() - t0;
        const r: DescribeResult = await client.describe(input, { maxNewTokens, timeoutMs: cfg.model.timeoutMs });
        const entry: DescribeJsonEntry = {
          file,
          frame: sel.frameIndex + 1,
          text: r.text,
          tokens: r.tokenIds,
          stopReason: r.stopReason,
          timings: {
            preprocessMs,
            visionEncoderMs: r.timings.visionEncoderMs,
            prefillMs: r.timings.prefillMs,
            decodeMs: r.timings.decodeMs,
          },
          provider: r.provider,
          model: {
            path: r.model.path,
            name: r.model.name,
            version: r.model.version,
            fixture: r.model.fixture,
            ...(r.model.label !== undefined ? { label: r.model.label } : {}),
          },
        };
        out.push(entry);
        if (!json) {
          const where = sel.candidate.numberOfFrames > 1 ? `${file} [frame ${entry.frame}]` : file;
          const warn = r.model.fixture ? ` (${r.model.label ?? 'test fixture'})` : '';
          process.stdout.write(`${where}${warn}:\n${r.text}\n\n`);
        }
      } catch (err: unknown) {
        failed++;
        process.stderr.write(`radscribe describe: ${file}: ${normalizeErrorString(err)} (${errorCodeOf(err)})\n`);
      }
    }
  } finally {
    await prep.close();
    await client.close();
  }
  if (json) process.stdout.write(`${JSON.stringify(out, null, 2)}\n`);
  return failed > 0 ? 1 : 0;
}

export const describeCommand: CliCommand = {
  name: 'describe',
  usage: ['describe <file.dcm>... [--model <bundle>] [--json] [--max-new-tokens N] [--config FILE]'],
  run,
};
