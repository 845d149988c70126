import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { get } from 'node:http';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { DicomwebClient } from '../src/pacs/dicomweb-client.js';
import { parseMultipart } from '../src/pacs/multipart.js';
import { discardHashing, spoolToTempFile } from '../src/pacs/temp-spool.js';

/**
 * `npm run bench -- multipart` (issue 14): the multipart/related parser alone, without a peer, on a
 * WADO-RS-shaped body (N parts of S KiB, application/dicom) held in memory:
 *  1. parse only: the body fed in `--chunk-kb` slices (undici hands out socket reads of about that
 *     size), every part's body drained and dropped;
 *  2. parse + SHA-256 (discardHashing);
 *  3. parse + spool: each part into its own temp file with SHA-256 (spoolToTempFile, as
 *     study retrieval does);
 *  4. over HTTP: DicomwebClient.retrieveStudy from a Node server in a child process (loopback),
 *     parts spooled, against the child serving the same body to a plain fetch that drops it.
 * Figures are ms per part (median of `--rounds`), MB/s of part data, and this process's CPU time
 * per part (user + system; steadier than wall time on a shared machine; the server child not counted). No peer to compare with: the
 * peers benchmark holds the curl comparison; this one says where the client's time goes.
 * Options: --parts N (200), --size-kb S (519), --chunk-kb C (64), --rounds R (5).
 */

function options(): { parts: number; sizeKb: number; chunkKb: number; rounds: number } {
  const args = process.argv.slice(2);
  const num = (name: string, d: number): number => {
    const i = args.indexOf(`--${name}`);
    const n = i >= 0 ? Number(args[i + 1]) : d;
    if (!Number.isFinite(n) || n <= 0) throw new Error(`--${name} must be a number > 0`);
    return n;
  };
  return {
    parts: num('parts', 200),
    sizeKb: num('size-kb', 519),
    chunkKb: num('chunk-kb', 64),
    rounds: num('rounds', 5),
  };
}

const BOUNDARY = 'bench-boundary-0123456789abcdef';

function buildBody(parts: number, size: number): Buffer {
  const out: Buffer[] = [];
  for (let i = 0; i < parts; i++) {
    out.push(Buffer.from(`\r\n--${BOUNDARY}\r\nContent-Type: application/dicom\r\n\r\n`));
    // Random bytes: "\r\n-" near misses occur as they do in pixel data.
    out.push(randomBytes(size));
  }
  out.push(Buffer.from(`\r\n--${BOUNDARY}--\r\n`));
  return Buffer.concat(out);
}

async function* chunks(buf: Buffer, size: number): AsyncGenerator<Buffer> {
  for (let i = 0; i < buf.length; i += size) yield buf.subarray(i, i + size);
}

const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] as number;

const SERVER = `
const http = require('node:http');
const fs = require('node:fs');
const body = fs.readFileSync(process.argv[1]);
const s = http.createServer((req, res) => {
  res.writeHead(200, { 'content-type': 'multipart/related; type="application/dicom"; boundary=${BOUNDARY}', 'content-length': body.length });
  res.end(body);
});
s.listen(0, '127.0.0.1', () => process.stdout.write(String(s.address().port) + '\\n'));
`;

export async function run(): Promise<void> {
  const o = options();
  const size = Math.round(o.sizeKb * 1024);
  const body = buildBody(o.parts, size);
  const dir = mkdtempSync(path.join(tmpdir(), 'rs-multipart-bench-'));
  const bodyFile = path.join(dir, 'body.multipart');
  require('node:fs').writeFileSync(bodyFile, body);
  const child = spawn(process.execPath, ['-e', SERVER, bodyFile], { stdio: ['ignore', 'pipe', 'inherit'] });
  const port = await new Promise<number>((resolve, reject) => {
    child.stdout.once('data', (d: Buffer) => resolve(Number(d.toString().trim())));
    child.once('error', reject);
  });
  const url = `http://127.0.0.1:${port}`;
  const client = new DicomwebClient({ baseUrl: url });
  const cases: [string, () => Promise<number>][] = [
    [
      'parse, bodies dropped',
      async () => {
        let n = 0;
        for await (const p of parseMultipart(chunks(body, o.chunkKb * 1024), BOUNDARY)) {
          for await (const _ of p.body) n += 0;
          n++;
        }
        return n;
      },
    ],
    [
      'parse + SHA-256',
      async () => {
        let n = 0;
        for await (const p of parseMultipart(chunks(body, o.chunkKb * 1024), BOUNDARY)) {
          await discardHashing(p.body);
          n++;
        }
        return n;
      },
    ],
    [
      'parse + spool (file per part, SHA-256)',
      async () => {
        let n = 0;
        const d = mkdtempSync(path.join(dir, 'spool-'));
        for await (const p of parseMultipart(chunks(body, o.chunkKb * 1024), BOUNDARY)) {
          await spoolToTempFile(p.body, d, 'wado');
          n++;
        }
        rmSync(d, { recursive: true, force: true });
        return n;
      },
    ],
    [
      'HTTP: fetch, body dropped (no parsing)',
      async () => {
        const res = await fetch(`${url}/studies/1`);
        for await (const _ of res.body as AsyncIterable<Uint8Array>);
        return o.parts;
      },
    ],
    [
      'HTTP: node:http get, body dropped (no parsing)',
      () =>
        new Promise<number>((resolve, reject) => {
          get(`${url}/studies/1`, (res) => {
            res.on('data', () => undefined);
            res.on('end', () => resolve(o.parts));
            res.on('error', reject);
          }).on('error', reject);
        }),
    ],
    [
      'HTTP: DicomwebClient.retrieveStudy, SHA-256 only',
      async () =>
        client.retrieveStudy('1.2.3', {
          onInstance: async (b) => {
            await discardHashing(b);
          },
        }),
    ],
    [
      'HTTP: DicomwebClient.retrieveStudy + spool',
      async () => {
        const d = mkdtempSync(path.join(dir, 'spool-'));
        const n = await client.retrieveStudy('1.2.3', {
          onInstance: async (b) => {
            await spoolToTempFile(b, d, 'wado');
          },
        });
        rmSync(d, { recursive: true, force: true });
        return n;
      },
    ],
  ];
  try {
    process.stdout.write(
      `${o.parts} parts × ${o.sizeKb} KiB, chunks of ${o.chunkKb} KiB, median of ${o.rounds} rounds\n`,
    );
    for (const [name, fn] of cases) {
      const ts: number[] = [];
      const cpu: number[] = [];
      for (let r = 0; r < o.rounds; r++) {
        const c0 = process.cpuUsage();
        const t0 = performance.now();
        const n = await fn();
        ts.push(performance.now() - t0);
        const c = process.cpuUsage(c0);
        cpu.push((c.user + c.system) / 1000);
        if (n !== o.parts) throw new Error(`${name}: ${n} parts, not ${o.parts}`);
      }
      const ms = median(ts) / o.parts;
      const mbs = size / 1e6 / (ms / 1000);
      const cpuMs = median(cpu) / o.parts;
      process.stdout.write(
        `${name.padEnd(48)} ${ms.toFixed(3)} ms/part  ${mbs.toFixed(0).padStart(5)} MB/s  CPU ${cpuMs.toFixed(3)} ms/part\n`,
      );
    }
  } finally {
    child.kill();
    rmSync(dir, { recursive: true, force: true });
  }
}
