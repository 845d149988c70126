import { createReadStream } from 'node:fs';
import { stat } from 'node:fs/promises';
import { Readable } from 'node:stream';
import { ErrorCode, RadScribeError } from '../errors.js';

/**
 * Streaming multipart/related (RFC 2387) on the RFC 2046 §5.1.1 grammar:
 *
 *   multipart-body := [preamble CRLF] dash-boundary transport-padding CRLF body-part
 *                     *encapsulation close-delimiter transport-padding [CRLF epilogue]
 *   delimiter      := CRLF dash-boundary          dash-boundary := "--" boundary
 *
 * Bodies are handed out as streams while the request is still arriving; memory per request is a
 * small window (boundary length + one socket chunk + the part headers), never a whole part or request.
 * DICOMweb STOW-RS (PS3.18 §10.5) and WADO-RS (§10.4) both use this container.
 */

/** Why a multipart stream was refused. Closed set; each maps to one ErrorCode below. */
export const MultipartFailure = {
  /** Grammar violated (no boundary found, header block malformed). */
  Malformed: 'malformed',
  /** Stream ended before the close delimiter (client disconnect, truncated upload). */
  Truncated: 'truncated',
  /** One part's body exceeded `maxPartBytes`; the parser skips it and goes on. */
  PartTooLarge: 'part-too-large',
  /** The whole stream exceeded `maxTotalBytes`; parsing stops. */
  TotalTooLarge: 'total-too-large',
  /**
   * One part's header block exceeded `maxHeaderBytes` or had a line that is not a header field;
   * the part is refused alone and the parser skips to the next delimiter.
   */
  BadPartHeaders: 'bad-part-headers',
} as const;
export type MultipartFailure = (typeof MultipartFailure)[keyof typeof MultipartFailure];

export class MultipartError extends RadScribeError {
  override name = 'MultipartError';
  readonly failure: MultipartFailure;
  constructor(failure: MultipartFailure, message: string, options?: { cause?: unknown }) {
    super(codeOfFailure(failure), `multipart: ${message}`, options);
    this.failure = failure;
  }
}

function codeOfFailure(failure: MultipartFailure): ErrorCode {
  switch (failure) {
    case MultipartFailure.PartTooLarge:
      return ErrorCode.OutOfResources;
    case MultipartFailure.TotalTooLarge:
      return ErrorCode.PayloadTooLarge;
    default:
      return ErrorCode.RequestInvalid;
  }
}

/**
 * Longest boundary accepted on input. RFC 2046 §5.1.1 caps a boundary at 70 characters, but
 * Orthanc's DICOMweb STOW client sends two UUIDs (73 characters) and other senders go further; the
 * parser's window grows by the boundary length only, so a cap far above 70 costs nothing and keeps
 * a hostile header from making the delimiter search expensive. What RadScribe sends stays ≤ 70.
 */
export const MAX_INBOUND_BOUNDARY_LENGTH = 256;
/** RFC 2046 §5.1.1 limit, applied to every boundary RadScribe writes. */
export const MAX_OUTBOUND_BOUNDARY_LENGTH = 70;

// RFC 2046 §5.1.1: bchars := bcharsnospace / " "; the last character is not a space.
const BCHARS_RE = /^[0-9A-Za-z'()+_,\-./:=? ]*[0-9A-Za-z'()+_,\-./:=?]$/;

/**
 * Why `boundary` cannot be used, or undefined when it can: RFC 2046 bchars, not ending in a space,
 * 1..`maxLength` characters. The message names the rule, never echoes the whole header.
 */
export function boundaryProblem(boundary: string, maxLength: number): string | undefined {
  if (boundary.length === 0) return 'boundary is empty';
  if (boundary.length > maxLength) return `boundary is ${boundary.length} characters; at most ${maxLength} accepted`;
  if (!BCHARS_RE.test(boundary)) return 'boundary has characters outside RFC 2046 §5.1.1 bchars or ends in a space';
  return undefined;
}

function assertOutboundBoundary(boundary: string): void {
  const why = boundaryProblem(boundary, MAX_OUTBOUND_BOUNDARY_LENGTH);
  if (why) throw new RadScribeError(ErrorCode.Internal, `outbound multipart: ${why}`);
}

export function isMultipartError(err: unknown, failure?: MultipartFailure): err is MultipartError {
  return err instanceof MultipartError && (failure === undefined || err.failure === failure);
}

export interface MultipartLimits {
  /** Largest accepted body of one part. */
  readonly maxPartBytes: number;
  /** Largest accepted stream, preamble and epilogue included. */
  readonly maxTotalBytes: number;
  /** Largest header block of one part. */
  readonly maxHeaderBytes: number;
}

export const DEFAULT_MULTIPART_LIMITS: MultipartLimits = {
  maxPartBytes: 4 * 1024 ** 3,
  maxTotalBytes: 20 * 1024 ** 3,
  maxHeaderBytes: 16 * 1024,
};

export interface MultipartPart {
  /** 0-based position in the stream. */
  readonly index: number;
  /** Header names lower-cased (RFC 822 names are case-insensitive). */
  readonly headers: Readonly<Record<string, string>>;
  /** The part's body. Consume or destroy it before asking for the next part; unread data is discarded. */
  readonly body: Readable;
  /**
   * Set when the part's header block could not be read (BadPartHeaders): `headers` is empty and
   * `body` holds the rest of the part up to the next delimiter, to be discarded. The stream goes on.
   */
  readonly headerFailure?: MultipartError;
}

const CRLF = Buffer.from('\r\n');
const CRLFCRLF = Buffer.from('\r\n\r\n');
/** Transport padding is LWSP (RFC 2046 §5.1.1); a line longer than this is not a boundary line. */
const MAX_PADDING = 1024;

/**
 * Bytes copied from a new chunk onto a non-empty window. The window is the unconsumed tail of the
 * previous chunk (a possible delimiter start, a header block in progress); stitching only a slice
 * of the new chunk onto it keeps every socket read zero-copy once the tail is gone, and the rest of
 * the chunk is handed out as the next window without being copied.
 */
const STITCH_BYTES = 4096;

/**
 * The source as a window of unconsumed bytes. Chunks are taken as they are (no copy) whenever the
 * window is empty, which is the case in a part body after each emit; counts bytes against the total cap.
 */
class ByteWindow {
  buf: Buffer;
  total = 0;
  ended = false;
  /** The part of the last chunk not yet stitched onto `buf`. */
  private rest: Buffer | undefined;
  private readonly it: AsyncIterator<Uint8Array | string>;
  constructor(
    source: AsyncIterable<Uint8Array | string>,
    private readonly maxTotal: number,
    initial: Buffer,
  ) {
    this.it = source[Symbol.asyncIterator]();
    this.buf = initial;
  }
  /** Append more bytes (at least one) to the window; false at end of stream. */
  async more(): Promise<boolean> {
    let chunk = this.rest;
    this.rest = undefined;
    if (chunk === undefined) {
      chunk = await this.pull();
      if (chunk === undefined) return false;
    }
    if (this.buf.length === 0) this.buf = chunk;
    else if (chunk.length <= STITCH_BYTES) this.buf = Buffer.concat([this.buf, chunk]);
    else {
      this.buf = Buffer.concat([this.buf, chunk.subarray(0, STITCH_BYTES)]);
      this.rest = chunk.subarray(STITCH_BYTES);
    }
    return true;
  }
  private async pull(): Promise<Buffer | undefined> {
    for (;;) {
      if (this.ended) return undefined;
      let r: IteratorResult<Uint8Array | string>;
      try {
        r = await this.it.next();
      } catch (err: unknown) {
        this.ended = true;
        throw new MultipartError(MultipartFailure.Truncated, 'source stream failed', { cause: err });
      }
      if (r.done) {
        this.ended = true;
        return undefined;
      }
      const chunk =
        typeof r.value === 'string'
          ? Buffer.from(r.value)
          : Buffer.from(r.value.buffer, r.value.byteOffset, r.value.byteLength);
      this.total += chunk.length;
      if (this.total > this.maxTotal) {
        this.ended = true;
        throw new MultipartError(MultipartFailure.TotalTooLarge, `stream exceeds ${this.maxTotal} bytes`);
      }
      if (chunk.length > 0) return chunk;
    }
  }
  consume(n: number): void {
    this.buf = this.buf.subarray(n);
  }
  /** Forget what is in the window and in the unstitched rest (the epilogue). */
  clear(): void {
    this.buf = EMPTY;
    this.rest = undefined;
  }
}

const EMPTY = Buffer.alloc(0);

/**
 * Length of the longest proper suffix of `buf` that is a prefix of `delimiter`: the bytes that must
 * stay in the window because the next chunk may complete a delimiter with them. Every delimiter
 * starts with CR, so only the CRs among the last `delimiter.length - 1` bytes are candidates; in
 * pixel data that is almost always none, and the whole chunk goes out as it came.
 */
function delimiterPrefixAtEnd(buf: Buffer, delimiter: Buffer): number {
  let i = buf.indexOf(0x0d, Math.max(0, buf.length - (delimiter.length - 1)));
  while (i >= 0) {
    const n = buf.length - i;
    if (buf.compare(delimiter, 0, n, i) === 0) return n;
    i = buf.indexOf(0x0d, i + 1);
  }
  return 0;
}

/**
 * Chunks the parser may hand a part's consumer ahead of its reads: enough that the parser and the
 * consumer (hash, file writes) work on different chunks instead of taking turns on each, few enough
 * that a stalled consumer holds the source at a few socket reads (each chunk is a slice of one).
 */
const PART_BODY_BUFFERED_CHUNKS = 4;

/**
 * A part's body as handed to the caller: a plain Readable fed by the parser (no Transform in
 * between). It is in object mode only so that every read hands out one chunk as the source cut it:
 * a byte-mode read() joins all buffered chunks into a new buffer (a copy of every body byte). The
 * chunks are Buffers, as from any byte stream. `push` returning false parks the parser until the
 * consumer asks for more (`_read`) or goes away (`_destroy`): that is the back-pressure that stops
 * the parser pulling from the source.
 */
class PartBody extends Readable {
  private wake: (() => void) | undefined;
  constructor() {
    super({ objectMode: true, highWaterMark: PART_BODY_BUFFERED_CHUNKS });
    // The parser runs ahead of the consumer (a few chunks) and may fail the body (part too large,
    // source cut off) before the consumer has attached anything, e.g. while it opens its spool
    // file. The error is kept in the stream's errored state, which every reader sees (async
    // iterator, pipeline, finished); it must not also be an uncaught 'error' event of the process.
    this.on('error', () => undefined);
  }
  override _read(): void {
    this.resolveWait();
  }
  override _destroy(err: Error | null, cb: (err?: Error | null) => void): void {
    this.resolveWait();
    cb(err);
  }
  /** Hand out `chunk`; resolves when the consumer can take more (or is gone). */
  async offer(chunk: Buffer): Promise<void> {
    if (this.destroyed || chunk.length === 0) return;
    if (this.push(chunk)) return;
    if (this.destroyed) return;
    await new Promise<void>((resolve) => {
      this.wake = resolve;
    });
  }
  finish(): void {
    if (!this.destroyed) this.push(null);
  }
  private resolveWait(): void {
    const w = this.wake;
    this.wake = undefined;
    w?.();
  }
}

function parseHeaderBlock(block: string): Record<string, string> {
  const headers: Record<string, string> = {};
  let last: string | undefined;
  for (const line of block.split('\r\n')) {
    if (line === '') continue;
    if ((line[0] === ' ' || line[0] === '\t') && last !== undefined) {
      // obs-fold continuation (RFC 822 §3.1.1).
      headers[last] = `${headers[last]} ${line.trim()}`;
      continue;
    }
    const colon = line.indexOf(':');
    if (colon <= 0) throw new MultipartError(MultipartFailure.BadPartHeaders, 'part header line without a name');
    last = line.slice(0, colon).trim().toLowerCase();
    headers[last] = line.slice(colon + 1).trim();
  }
  return headers;
}

/**
 * Parse a multipart stream. Yields each part with its body as a stream; the generator resumes only
 * after the caller asks for the next part, and by then the previous body has been fully delivered
 * (or discarded). A body that exceeds `maxPartBytes` is destroyed with MultipartError(part-too-large)
 * and the parser skips to the next part. Grammar violations, truncation and the total cap throw.
 * The caller owns `source`: on an error it is left as is (an HTTP server must still answer on the
 * same socket), so destroy or cancel it yourself where that is wanted.
 */
export async function* parseMultipart(
  source: AsyncIterable<Uint8Array | string>,
  boundary: string,
  limits: Partial<MultipartLimits> = {},
): AsyncGenerator<MultipartPart, void, undefined> {
  const lim: MultipartLimits = { ...DEFAULT_MULTIPART_LIMITS, ...limits };
  const why = boundaryProblem(boundary, MAX_INBOUND_BOUNDARY_LENGTH);
  if (why) throw new MultipartError(MultipartFailure.Malformed, why);
  const delimiter = Buffer.from(`\r\n--${boundary}`);
  // A virtual CRLF in front lets "--boundary" at offset 0 and "preamble CRLF --boundary" match alike.
  const win = new ByteWindow(source, lim.maxTotalBytes, Buffer.from(CRLF));
  let current: PartBody | undefined;
  try {
    // Preamble: discard up to the first delimiter, keeping a tail that could start one.
    for (;;) {
      const at = win.buf.indexOf(delimiter);
      if (at >= 0) {
        win.consume(at + delimiter.length);
        break;
      }
      win.consume(Math.max(0, win.buf.length - (delimiter.length - 1)));
      if (!(await win.more())) throw new MultipartError(MultipartFailure.Malformed, 'no boundary delimiter found');
    }
    let index = 0;
    for (;;) {
      // After a dash-boundary: "--" closes, else transport-padding CRLF opens a part.
      const tail = await peekBoundaryTail(win);
      if (tail.kind === 'not-boundary') {
        throw new MultipartError(MultipartFailure.Malformed, 'boundary line followed by unexpected characters');
      }
      win.consume(tail.length);
      if (tail.kind === 'close') break;
      const head = await readHeaders(win, lim.maxHeaderBytes, delimiter);
      const body = new PartBody();
      current = body;
      const pump = pumpBody(win, body, delimiter, lim.maxPartBytes);
      // Errors surface through the body stream and, below, through the generator.
      pump.catch(() => undefined);
      if (head instanceof MultipartError) {
        // The part is refused alone (PartBody never raises an uncaught 'error' for its body).
        yield { index: index++, headers: {}, body, headerFailure: head };
      } else {
        yield { index: index++, headers: head, body };
      }
      if (!body.readableFlowing && !body.destroyed) body.resume(); // discard what the caller left unread
      await pump;
      current = undefined;
    }
    // Epilogue (RFC 2046: to be ignored). Drain it so the peer is not reset while we answer; an
    // epilogue past the total cap is left unread (the parts before it are complete and valid).
    win.clear();
    try {
      while (await win.more()) win.clear();
    } catch (err: unknown) {
      if (!isMultipartError(err, MultipartFailure.TotalTooLarge)) throw err;
    }
  } catch (err: unknown) {
    if (current && !current.destroyed) current.destroy(err as Error);
    throw err;
  }
}

type BoundaryTail = { readonly kind: 'open' | 'close'; readonly length: number } | { readonly kind: 'not-boundary' };

/**
 * Classify the bytes after a dash-boundary without consuming them: "--" is the close delimiter,
 * LWSP* CRLF opens the next part (RFC 2046 §5.1.1 transport-padding), anything else is not a boundary.
 */
async function peekBoundaryTail(win: ByteWindow): Promise<BoundaryTail> {
  for (;;) {
    const b = win.buf;
    if (b.length >= 1 && b[0] === 0x2d) {
      if (b.length >= 2) return b[1] === 0x2d ? { kind: 'close', length: 2 } : { kind: 'not-boundary' };
    } else {
      let i = 0;
      while (i < b.length && (b[i] === 0x20 || b[i] === 0x09)) i++;
      if (i > MAX_PADDING) return { kind: 'not-boundary' };
      if (i < b.length) {
        if (b[i] !== 0x0d) return { kind: 'not-boundary' };
        if (i + 1 < b.length) return b[i + 1] === 0x0a ? { kind: 'open', length: i + 2 } : { kind: 'not-boundary' };
      }
    }
    if (!(await win.more())) throw new MultipartError(MultipartFailure.Truncated, 'stream ended in a boundary line');
  }
}

/**
 * Read one part's header block, leaving the window at the start of its body. The block ends at the
 * first CRLF CRLF, or at the next delimiter when that comes first (a part with headers and no body).
 * A block over `maxHeaderBytes` or with a line that is not a header field refuses this part only:
 * the result is a MultipartError(bad-part-headers) and the window stays where the body pump will
 * skip the rest of the part.
 */
async function readHeaders(
  win: ByteWindow,
  maxHeaderBytes: number,
  delimiter: Buffer,
): Promise<Record<string, string> | MultipartError> {
  for (;;) {
    // No headers at all: the boundary line's CRLF is followed directly by the blank line.
    if (win.buf.length >= 2 && win.buf[0] === 0x0d && win.buf[1] === 0x0a) {
      win.consume(2);
      return {};
    }
    // Both searches stop at the cap (a blank line past it refuses the part anyway) and the
    // delimiter search at the blank line: the body in the window is the pump's to scan, once.
    const end = win.buf.subarray(0, maxHeaderBytes + CRLFCRLF.length).indexOf(CRLFCRLF);
    const reach = end >= 0 ? end + delimiter.length : maxHeaderBytes + delimiter.length;
    const delim = win.buf.subarray(0, reach).indexOf(delimiter);
    const stop = delim >= 0 && (end < 0 || delim <= end) ? delim : end;
    if (stop >= 0 || win.buf.length > maxHeaderBytes) {
      if (stop < 0 || stop > maxHeaderBytes) {
        // Up to the next delimiter, or keep a tail that may start one; the body pump finds it.
        win.consume(delim >= 0 ? delim : Math.max(0, win.buf.length - (delimiter.length - 1)));
        return new MultipartError(MultipartFailure.BadPartHeaders, `part headers exceed ${maxHeaderBytes} bytes`);
      }
      const block = win.buf.subarray(0, stop).toString('latin1');
      win.consume(stop === end ? end + CRLFCRLF.length : stop);
      try {
        return parseHeaderBlock(block);
      } catch (err: unknown) {
        if (err instanceof MultipartError) return err;
        throw err;
      }
    }
    if (!(await win.more())) throw new MultipartError(MultipartFailure.Truncated, 'stream ended in part headers');
  }
}

/** Move body bytes to `body` up to the next delimiter; leaves the window just after the dash-boundary. */
async function pumpBody(win: ByteWindow, body: PartBody, delimiter: Buffer, maxPartBytes: number): Promise<void> {
  let size = 0;
  let overflow = false;
  const emit = async (chunk: Buffer): Promise<void> => {
    if (overflow) return;
    size += chunk.length;
    if (size > maxPartBytes) {
      overflow = true;
      body.destroy(new MultipartError(MultipartFailure.PartTooLarge, `part exceeds ${maxPartBytes} bytes`));
      return;
    }
    await body.offer(chunk);
  };
  try {
    let from = 0;
    for (;;) {
      const at = win.buf.indexOf(delimiter, from);
      if (at >= 0) {
        // Only a delimiter followed by "--" or LWSP CRLF ends the part; anything else is body text
        // that merely looks like a boundary (RFC 2046 forbids it, senders still produce it).
        const save = win.buf;
        win.consume(at + delimiter.length);
        const tail = await peekBoundaryTail(win);
        if (tail.kind !== 'not-boundary') {
          await emit(save.subarray(0, at));
          if (!overflow) body.finish();
          return;
        }
        // Not a boundary: emit through the delimiter bytes and keep scanning.
        await emit(save.subarray(0, at + delimiter.length));
        from = 0;
        continue;
      }
      // All but a tail that could begin a delimiter: zero-copy, usually the whole window.
      const safe = win.buf.length - delimiterPrefixAtEnd(win.buf, delimiter);
      if (safe > 0) {
        const chunk = win.buf.subarray(0, safe);
        win.consume(safe);
        await emit(chunk);
      }
      from = 0;
      if (!(await win.more())) throw new MultipartError(MultipartFailure.Truncated, 'stream ended inside a part body');
    }
  } catch (err: unknown) {
    if (!body.destroyed) body.destroy(err as Error);
    throw err;
  }
}

/** One outbound part: a file path (streamed from disk) or bytes. */
export interface OutboundPart {
  readonly contentType: string;
  readonly body: string | Uint8Array;
  readonly headers?: Readonly<Record<string, string>>;
}

function partHead(part: OutboundPart, boundary: string): Buffer {
  // Every part opens with CRLF "--" boundary: for the first one the CRLF ends an empty preamble
  // (RFC 2046 §5.1.1), as dicomweb-client writes it.
  let head = `\r\n--${boundary}\r\nContent-Type: ${part.contentType}\r\n`;
  for (const [k, v] of Object.entries(part.headers ?? {})) head += `${k}: ${v}\r\n`;
  return Buffer.from(`${head}\r\n`, 'latin1');
}

const closeDelimiter = (boundary: string): Buffer => Buffer.from(`\r\n--${boundary}--\r\n`, 'latin1');

/**
 * Exact byte length of `multipartBody(parts, boundary)`, so the request can carry Content-Length:
 * some servers and proxies refuse chunked request bodies.
 */
export async function multipartBodyLength(parts: readonly OutboundPart[], boundary: string): Promise<number> {
  assertOutboundBoundary(boundary);
  let n = closeDelimiter(boundary).length;
  for (const part of parts) {
    n += partHead(part, boundary).length;
    n += typeof part.body === 'string' ? (await stat(part.body)).size : part.body.byteLength;
  }
  return n;
}

/**
 * Build a multipart/related body as a stream (outbound STOW-RS, PS3.18 §10.5.1.2). Files are read
 * from disk as the peer consumes the body, so a study upload never sits in memory.
 */
export function multipartBody(parts: readonly OutboundPart[], boundary: string): Readable {
  assertOutboundBoundary(boundary);
  async function* generate(): AsyncGenerator<Buffer> {
    for (const part of parts) {
      yield partHead(part, boundary);
      if (typeof part.body === 'string') {
        for await (const chunk of createReadStream(part.body)) yield chunk as Buffer;
      } else {
        yield Buffer.from(part.body.buffer, part.body.byteOffset, part.body.byteLength);
      }
    }
    yield closeDelimiter(boundary);
  }
  return Readable.from(generate(), { objectMode: false });
}
