import { createReadStream } from 'node:fs';
import path from 'node:path';
import { describeCallOptions, imagePrepOptions } from '../config/options.js';
import { type InstanceIdentity, instanceIdentity } from '../dicom/dataset.js';
import { type Part10Header, readPart10Header } from '../dicom/header-reader.js';
import { errorCodeOf, normalizeErrorString } from '../errors.js';
import type { ImageInput } from '../inference/image-input.js';
import { type DescribeResult, InferenceClient } from '../inference/inference-client.js';
import { instanceHeaderOf } from '../ingest/received-header.js';
import type { InstanceHeader } from '../ingest/types.js';
import { type SelectedFrame, type SelectionPolicy, selectFrames } from '../pipeline/frame-selection.js';
import { ImagePrepClient } from '../pipeline/image-prep-client.js';
import { type Args, boolFlag, type CliCommand, configFrom, flag, intFlag, UsageError } from './args.js';

/**
 * `radscribe describe <file.dcm>... [--model <bundle>] [--json]` (issue 4): runs the model on the frames the
 * configured selection policy picks from the given files and prints the text. `--json` prints one JSON array,
 * one object per described image. The model defaults to config `model.bundle` (out of the box the bundled
 * test fixture, whose output is meaningless).
 */

/**
 * A file given on the command line, as frame selection sees it: the header columns ingest stores in
 * `instances` (issue 8), so `radscribe describe` and the gateway choose the same frames.
 */
export interface FileCandidate extends InstanceHeader {
  readonly sopInstanceUid: string;
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

/**
 * A file's header, read once and only up to Pixel Data (the streaming reader ingest uses), mapped to
 * the columns ingest stores by the same function. Unlike ingest, a file without valid UIDs is still
 * described: its path stands in for them, so an operator can look at a stripped test image.
 */
async function fileCandidate(filePath: string): Promise<FileCandidate> {
  const stream = createReadStream(filePath, { highWaterMark: 64 * 1024 });
  let h: Part10Header;
  try {
    h = await readPart10Header(stream);
  } finally {
    stream.destroy();
  }
  let id: InstanceIdentity;
  try {
    id = instanceIdentity(h.instance);
  } catch {
    const d = h.instance.dataset;
    const uid = (v: unknown) => (typeof v === 'string' && v !== '' ? v : filePath);
    id = {
      studyInstanceUid: uid(d.StudyInstanceUID),
      seriesInstanceUid: uid(d.SeriesInstanceUID),
      sopInstanceUid: uid(d.SOPInstanceUID),
      sopClassUid: typeof d.SOPClassUID === 'string' ? d.SOPClassUID : '',
      transferSyntaxUid: h.transferSyntaxUid,
      modality: typeof d.Modality === 'string' && d.Modality !== '' ? d.Modality : undefined,
    };
  }
  return { ...instanceHeaderOf(h, id), sopInstanceUid: id.sopInstanceUid, filePath };
}

/** Each file as a selection candidate, in the order given; a file whose header cannot be read is a failure. */
export async function fileCandidates(files: readonly string[]): Promise<{
  candidates: FileCandidate[];
  failures: { file: string; error: unknown }[];
}> {
  const candidates: FileCandidate[] = [];
  const failures: { file: string; error: unknown }[] = [];
  for (const file of files) {
    try {
      candidates.push(await fileCandidate(file));
    } catch (error: unknown) {
      failures.push({ file, error });
    }
  }
  return { candidates, failures };
}

/** The frames the selection policy picks from the files, in the order the files were given. */
export function selectFileFrames(
  candidates: readonly FileCandidate[],
  policy: SelectionPolicy,
): SelectedFrame<FileCandidate>[] {
  // selectFrames groups by modality kind; report in the order the files were given.
  const order = new Map(candidates.map((c, i) => [c, i]));
  return selectFrames(candidates, policy).sort(
    (a, b) => (order.get(a.candidate) ?? 0) - (order.get(b.candidate) ?? 0) || a.frameIndex - b.frameIndex,
  );
}

async function run(args: Args): Promise<number> {
  const files = args.positional.slice(1);
  if (files.length === 0) throw new UsageError('describe: give at least one DICOM file');
  const cfg = configFrom(args);
  const bundleDir = path.resolve(flag(args, 'model') ?? cfg.model.bundle);
  const maxNewTokens = intFlag(args, 'max-new-tokens', cfg.model.maxNewTokens);
  const json = boolFlag(args, 'json');
  let failed = 0;

  const { candidates, failures } = await fileCandidates(files);
  for (const { file, error } of failures) {
    failed++;
    process.stderr.write(`radscribe describe: ${file}: ${normalizeErrorString(error)} (${errorCodeOf(error)})\n`);
  }
  const selected = selectFileFrames(candidates, cfg.selection);
  for (const c of candidates) {
    if (!c.hasPixelData) process.stderr.write(`radscribe describe: ${c.filePath}: no pixel data, skipped\n`);
  }

  const client = await InferenceClient.start({
    bundleDir,
    executionProviders: cfg.model.executionProviders,
    intraOpNumThreads: cfg.model.intraOpNumThreads,
  });
  const prep = new ImagePrepClient(imagePrepOptions(cfg));
  const out: DescribeJsonEntry[] = [];
  try {
    for (const sel of selected) {
      const file = sel.candidate.filePath;
      try {
        const t0 = performance.now();
        // The image-prep worker builds whichever input the bundle's preprocessor_config.json names.
        const input: ImageInput = (await prep.prepare(file, sel.frameIndex, client.preprocessorConfig)).input;
        const preprocessMs = performance.now() - t0;
        const r: DescribeResult = await client.describe(input, { ...describeCallOptions(cfg), maxNewTokens });
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
