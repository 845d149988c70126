import { createHash, randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Readable } from 'node:stream';
import { MultipartFailure, parseMultipart } from '../../../src/pacs/multipart.js';
import { spoolToTempFile } from '../../../src/pacs/temp-spool.js';

/**
 * Issue 14 (WADO-RS hot path): part bodies are slices of the source's own chunks (no copy of body
 * bytes), every chunking gives the same parts, including chunks far larger than the window stitch
 * and delimiter prefixes ("\r", "\r\n-", …) cut at chunk ends; spooled files hold exactly the part.
 */

const B = 'zc-boundary';
const DELIM = `\r\n--${B}`;

/** Pixel-like data salted with near misses of the delimiter (every proper prefix, and glued ones). */
function payload(size: number, seed: number): Buffer {
  const out = randomBytes(size);
  for (let at = seed % 997, k = 0; at + DELIM.length + 2 < size; at += 1500 + ((k * 7919) % 4000), k++) {
    const n = 1 + (k % (DELIM.length - 1)); // 1 … length-1 bytes of the delimiter
    out.write(DELIM.slice(0, n), at, 'latin1');
    if (k % 5 === 0) out.write(`${DELIM}X`, at, 'latin1'); // whole dash-boundary glued to data
  }
  return out;
}

function body(parts: Buffer[]): Buffer {
  const chunks: Buffer[] = [];
  parts.forEach((p, i) => {
    chunks.push(Buffer.from(`${i === 0 ? '' : '\r\n'}--${B}\r\nContent-Type: application/dicom\r\n\r\n`, 'latin1'));
    chunks.push(p);
  });
  chunks.push(Buffer.from(`\r\n--${B}--\r\n`, 'latin1'));
  return Buffer.concat(chunks);
}

async function* sliced(buf: Buffer, size: number): AsyncGenerator<Buffer> {
  for (let i = 0; i < buf.length; i += size) yield buf.subarray(i, i + size);
}

async function* cutAt(buf: Buffer, cuts: number[]): AsyncGenerator<Buffer> {
  let at = 0;
  for (const c of [...cuts, buf.length]) {
    yield buf.subarray(at, c);
    at = c;
  }
}

const sha = (b: Buffer): string => createHash('sha256').update(b).digest('hex');

describe('multipart part bodies without copies', () => {
  const parts = [payload(300_000, 1), payload(5_000, 2), payload(0, 3), payload(140_001, 4)];
  const raw = body(parts);

  test.each([1_000, 4_095, 4_096, 4_097, 65_536, 1_000_000])('chunks of %d bytes give the same parts', async (size) => {
    const got: string[] = [];
    for await (const p of parseMultipart(sliced(raw, size), B)) {
      const chunks: Buffer[] = [];
      for await (const c of p.body) chunks.push(c as Buffer);
      got.push(sha(Buffer.concat(chunks)));
    }
    expect(got).toEqual(parts.map(sha));
  });

  test('a chunk cut inside every delimiter of the stream, at each offset', async () => {
    const starts: number[] = [];
    for (let at = raw.indexOf(DELIM); at >= 0; at = raw.indexOf(DELIM, at + 1)) starts.push(at);
    expect(starts.length).toBeGreaterThan(4); // the real delimiters and the glued near misses
    for (let k = 1; k < DELIM.length + 4; k += 3) {
      const got: string[] = [];
      for await (const p of parseMultipart(
        cutAt(
          raw,
          starts.map((s) => s + k),
        ),
        B,
      )) {
        const chunks: Buffer[] = [];
        for await (const c of p.body) chunks.push(c as Buffer);
        got.push(sha(Buffer.concat(chunks)));
      }
      expect(got).toEqual(parts.map(sha));
    }
  });

  test('body bytes are handed out as slices of the source chunks, one source chunk per read', async () => {
    const source = Buffer.from(raw); // one ArrayBuffer the chunks are cut from
    let copied = 0;
    let shared = 0;
    for await (const p of parseMultipart(sliced(source, 65_536), B)) {
      for await (const c of p.body) {
        const b = c as Buffer;
        expect(b.length).toBeLessThanOrEqual(65_536);
        if (b.buffer === source.buffer) shared += b.length;
        else copied += b.length;
      }
    }
    // Only the stitched start of a window after a chunk cut is copied (a few KiB per cut that
    // lands in headers or on a delimiter prefix), not the body.
    expect(shared + copied).toBe(parts.reduce((n, p) => n + p.length, 0));
    expect(copied).toBeLessThan(0.05 * (shared + copied));
  });
});

describe('the parser runs ahead of a late consumer', () => {
  test('a part over maxPartBytes failed before anyone listens: no uncaught error, the reader sees it', async () => {
    const raw = body([randomBytes(200_000), Buffer.from('next')]);
    const seen: string[] = [];
    for await (const p of parseMultipart(sliced(raw, 16_384), B, { maxPartBytes: 50_000 })) {
      // The consumer attaches late (opening its spool file): the parser has failed the body by then.
      await new Promise((r) => setTimeout(r, 20));
      try {
        const chunks: Buffer[] = [];
        for await (const c of p.body) chunks.push(c as Buffer);
        seen.push(Buffer.concat(chunks).toString('latin1'));
      } catch (err: unknown) {
        seen.push((err as { failure?: string }).failure ?? 'other');
      }
    }
    expect(seen).toEqual([MultipartFailure.PartTooLarge, 'next']);
  });
});

describe('spoolToTempFile (gathered writes)', () => {
  let dir: string;
  beforeEach(() => {
    dir = mkdtempSync(path.join(tmpdir(), 'rs-spool-'));
  });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  test.each([0, 1, 256 * 1024, 256 * 1024 + 1, 3 * 1024 * 1024 + 17])(
    'a %d-byte body lands whole with its SHA-256',
    async (size) => {
      const data = randomBytes(size);
      const f = await spoolToTempFile(Readable.from(sliced(data, 65_536)), dir, 't');
      expect(f.sizeBytes).toBe(size);
      expect(f.sha256).toBe(sha(data));
      expect(readFileSync(f.path).equals(data)).toBe(true);
    },
  );

  test('a body that fails midway leaves no file and rejects with its error', async () => {
    async function* failing(): AsyncGenerator<Buffer> {
      for (let i = 0; i < 20; i++) yield randomBytes(65_536);
      throw new Error('cut off');
    }
    await expect(spoolToTempFile(Readable.from(failing()), dir, 't')).rejects.toThrow('cut off');
    expect(readdirSync(dir)).toEqual([]);
  });

  test('a directory that cannot be written: rejected, nothing left behind', async () => {
    const missing = path.join(dir, 'gone');
    await expect(spoolToTempFile(Readable.from(sliced(randomBytes(10), 4)), missing, 't')).rejects.toMatchObject({
      code: 'ENOENT',
    });
    expect(existsSync(missing)).toBe(false);
  });
});
