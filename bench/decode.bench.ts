import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Worker } from 'node:worker_threads';
import { parseDicomFile } from '../src/dicom/dataset.js';
import { getFrames } from '../src/dicom/frames.js';
import { decodeFrameFrom } from '../src/dicom/pixel-decoder.js';
import { renderFrame } from '../src/dicom/render.js';
import { buildMllamaInput, parseMllamaPreprocessorConfig } from '../src/dicom/tiles.js';
import { FIXTURES_DIR } from '../src/runtime-paths.js';

/**
 * Decode + render throughput (frames/s) per transfer syntax, RadScribe vs DCMTK dcm2pnm on the same
 * corpus files in the same run. dcm2pnm is one process per file (that is how it is used), so its
 * per-process start-up is measured on a tiny file and also subtracted ("corrected"). The Debian
 * dcm2pnm does not decompress JPEG/JPEG-LS/RLE itself, so compressed files are timed as
 * dcmdjpeg/dcmdjpls/dcmdrle + dcm2pnm (the DCMTK path to a picture). Also: time to Mllama tiles for
 * a synthetic 3000×3000 16-bit CR frame, and peak RSS while decoding a synthetic 500-frame file.
 */

const CORPUS = path.join(FIXTURES_DIR, 'corpus');
const REPS = 3;

interface Row {
  file: string;
  ts: string;
  refMethod: string;
  size: number;
  frames: number;
}

function manifest(): Row[] {
  const lines = readFileSync(path.join(CORPUS, 'MANIFEST.tsv'), 'utf8').trimEnd().split('\n');
  const h = (lines[0] ?? '').split('\t');
  return lines
    .slice(1)
    .map((l) => l.split('\t'))
    .filter((c) => (c[h.indexOf('ref_values_sha256')] ?? '') !== '' && /^(images|compressed)\//.test(c[0] ?? ''))
    .map((c) => ({
      file: c[0] ?? '',
      ts: (c[h.indexOf('transfer_syntax_uid')] ?? '').split(' ')[0] ?? '',
      refMethod: c[h.indexOf('ref_method')] ?? '',
      size: Number(c[h.indexOf('size_bytes')]),
      frames: Number(c[h.indexOf('frames')]) || 1,
    }));
}

async function ours(file: string): Promise<number> {
  const t = performance.now();
  const inst = parseDicomFile(readFileSync(file));
  const src = getFrames(inst);
  for (let i = 0; i < src.numberOfFrames; i++) renderFrame(inst.dataset, await decodeFrameFrom(src, i), i);
  return performance.now() - t;
}

function dcmtk(row: Row, dir: string): number | undefined {
  const m = /^(dcmdjpeg|dcmdjpls|dcmdrle|dcmconv)\b/.exec(row.refMethod);
  if (m === null) return undefined;
  const input = path.join(CORPUS, row.file);
  const t = performance.now();
  let src = input;
  if (m[1] !== 'dcmconv') {
    src = path.join(dir, 'native.dcm');
    if (spawnSync(m[1] as string, [...(m[1] === 'dcmdrle' ? [] : ['+px']), input, src]).status !== 0) return undefined;
  }
  if (spawnSync('dcm2pnm', ['+Fa', '-O', '+Wm', '+op', src, path.join(dir, 'out')]).status !== 0) return undefined;
  return performance.now() - t;
}

const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] ?? 0;

/** A minimal explicit VR LE Part 10 file with a native 16-bit MONOCHROME2 image. */
function syntheticDicom(rows: number, cols: number, frames: number): Uint8Array {
  const el = (g: number, e: number, vr: string, value: Uint8Array): Uint8Array => {
    const long = ['OB', 'OW', 'UN', 'SQ', 'UT'].includes(vr);
    const v = value.length % 2 ? Uint8Array.from([...value, vr === 'UI' ? 0 : 0x20]) : value;
    const head = new Uint8Array(long ? 12 : 8);
    const dv = new DataView(head.buffer);
    dv.setUint16(0, g, true);
    dv.setUint16(2, e, true);
    head[4] = vr.charCodeAt(0);
    head[5] = vr.charCodeAt(1);
    if (long) dv.setUint32(8, v.length, true);
    else dv.setUint16(6, v.length, true);
    const out = new Uint8Array(head.length + v.length);
    out.set(head);
    out.set(v, head.length);
    return out;
  };
  const s = (t: string) => new TextEncoder().encode(t);
  const us = (n: number) => new Uint8Array(new Uint16Array([n]).buffer);
  const meta = [el(2, 0x10, 'UI', s('1.2.840.10008.1.2.1'))];
  const metaLen = meta.reduce((n, e) => n + e.length, 0);
  const gl = el(2, 0, 'UL', new Uint8Array(new Uint32Array([metaLen]).buffer));
  const px = new Uint16Array(rows * cols * frames);
  for (let i = 0; i < px.length; i++) px[i] = (i * 7) & 0xfff;
  const ds = [
    el(0x08, 0x16, 'UI', s('1.2.840.10008.5.1.4.1.1.1')),
    el(0x08, 0x18, 'UI', s('2.25.1')),
    el(0x08, 0x60, 'CS', s('CR')),
    el(0x28, 0x02, 'US', us(1)),
    el(0x28, 0x04, 'CS', s('MONOCHROME2')),
    el(0x28, 0x08, 'IS', s(String(frames))),
    el(0x28, 0x10, 'US', us(rows)),
    el(0x28, 0x11, 'US', us(cols)),
    el(0x28, 0x100, 'US', us(16)),
    el(0x28, 0x101, 'US', us(12)),
    el(0x28, 0x102, 'US', us(11)),
    el(0x28, 0x103, 'US', us(0)),
    el(0x7fe0, 0x10, 'OW', new Uint8Array(px.buffer)),
  ];
  const parts = [new Uint8Array(128), s('DICM'), gl, ...meta, ...ds];
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
}

const PEAK_RSS_WORKER = `
const { parentPort, workerData } = require('node:worker_threads');
const { readFileSync } = require('node:fs');
const { parseDicomFile } = require(workerData.root + '/dist/src/dicom/dataset.js');
const { getFrames } = require(workerData.root + '/dist/src/dicom/frames.js');
const { decodeFrameFrom } = require(workerData.root + '/dist/src/dicom/pixel-decoder.js');
const { renderFrame } = require(workerData.root + '/dist/src/dicom/render.js');
(async () => {
  let peak = process.memoryUsage().rss;
  const inst = parseDicomFile(readFileSync(workerData.file));
  const src = getFrames(inst);
  const t = performance.now();
  for (let i = 0; i < src.numberOfFrames; i++) {
    renderFrame(inst.dataset, await decodeFrameFrom(src, i), i);
    peak = Math.max(peak, process.memoryUsage().rss);
  }
  parentPort.postMessage({ peak, ms: performance.now() - t, frames: src.numberOfFrames });
})();`;

export async function run(): Promise<void> {
  const dir = mkdtempSync(path.join(tmpdir(), 'rs-bench-'));
  try {
    const haveDcmtk = spawnSync('dcm2pnm', ['--version']).status === 0;
    const tiny = path.join(CORPUS, 'images', 'CT_small.dcm');
    const startup = haveDcmtk
      ? median(
          Array.from({ length: 7 }, () => {
            const t = performance.now();
            spawnSync('dcm2pnm', ['+Wm', '+op', tiny, path.join(dir, 'tiny')]);
            return performance.now() - t;
          }),
        )
      : 0;
    const byTs = new Map<
      string,
      { files: number; big: number; frames: number; ours: number; dcmtk: number; dcmtkN: number; spawns: number }
    >();
    for (const row of manifest()) {
      const file = path.join(CORPUS, row.file);
      let o: number;
      try {
        await ours(file); // warm-up (codec initialisation, JIT)
        o = median(Array.from({ length: REPS }, () => 0).map(() => 0));
        const times: number[] = [];
        for (let r = 0; r < REPS; r++) times.push(await ours(file));
        o = median(times);
      } catch {
        continue;
      }
      const d = haveDcmtk ? median(Array.from({ length: REPS }, () => dcmtk(row, dir) ?? Number.NaN)) : Number.NaN;
      const key = `${row.ts}${row.size >= 1_000_000 ? ' (≥1 MB)' : ''}`;
      const agg = byTs.get(key) ?? { files: 0, big: 0, frames: 0, ours: 0, dcmtk: 0, dcmtkN: 0, spawns: 0 };
      agg.files++;
      agg.frames += row.frames;
      agg.ours += o;
      if (Number.isFinite(d)) {
        agg.dcmtk += d;
        agg.dcmtkN += row.frames;
        agg.spawns += /^dcmconv/.test(row.refMethod) ? 1 : 2;
      }
      byTs.set(key, agg);
    }
    const out: string[] = [];
    out.push(`dcm2pnm start-up (median of 7 on CT_small.dcm): ${startup.toFixed(1)} ms per process\n`);
    out.push(
      '| transfer syntax | files | frames | RadScribe frames/s | DCMTK frames/s | ratio (raw) | ratio (start-up corrected) |',
    );
    out.push('|---|---:|---:|---:|---:|---:|---:|');
    for (const [ts, a] of [...byTs].sort()) {
      const oursFps = a.frames / (a.ours / 1000);
      const dFps = a.dcmtkN > 0 ? a.dcmtkN / (a.dcmtk / 1000) : Number.NaN;
      const corrected = a.dcmtkN > 0 ? a.dcmtkN / (Math.max(1e-3, a.dcmtk - a.spawns * startup) / 1000) : Number.NaN;
      const f = (x: number) => (Number.isFinite(x) ? x.toFixed(1) : 'n/a');
      out.push(
        `| ${ts} | ${a.files} | ${a.frames} | ${f(oursFps)} | ${f(dFps)} | ${f(oursFps / dFps)}× | ${f(oursFps / corrected)}× |`,
      );
    }

    // Time to tiles: synthetic 3000×3000 16-bit CR, file → tiles.
    const cr = path.join(dir, 'cr3000.dcm');
    writeFileSync(cr, syntheticDicom(3000, 3000, 1));
    const cfg = parseMllamaPreprocessorConfig(
      JSON.parse(readFileSync(path.join(FIXTURES_DIR, 'models', 'tiny-mllama', 'preprocessor_config.json'), 'utf8')),
    );
    const tt: number[] = [];
    for (let r = 0; r < REPS; r++) {
      const t = performance.now();
      const inst = parseDicomFile(readFileSync(cr));
      const src = getFrames(inst);
      buildMllamaInput(renderFrame(inst.dataset, await decodeFrameFrom(src, 0), 0), cfg);
      tt.push(performance.now() - t);
    }
    out.push(
      '',
      `time to tiles, 3000×3000 16-bit CR (synthetic, ${(statSync(cr).size / 1e6).toFixed(1)} MB): ${median(tt).toFixed(0)} ms (median of ${REPS})`,
    );

    // Peak RSS: 500-frame file decoded + rendered frame by frame in a fresh worker.
    const mf = path.join(dir, 'mf500.dcm');
    writeFileSync(mf, syntheticDicom(256, 256, 500));
    const res = await new Promise<{ peak: number; ms: number; frames: number }>((resolve, reject) => {
      const w = new Worker(PEAK_RSS_WORKER, {
        eval: true,
        workerData: { file: mf, root: path.resolve(__dirname, '..', '..') },
      });
      w.once('message', (m) => {
        resolve(m);
        void w.terminate();
      });
      w.once('error', reject);
    });
    out.push(
      `peak RSS, 500-frame 256×256 16-bit file (${(statSync(mf).size / 1e6).toFixed(1)} MB) decoded + rendered: ${(res.peak / 1e6).toFixed(0)} MB (process), ${(res.frames / (res.ms / 1000)).toFixed(0)} frames/s`,
    );
    process.stdout.write(`${out.join('\n')}\n`);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
