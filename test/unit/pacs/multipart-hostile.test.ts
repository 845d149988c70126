import { randomUUID } from 'node:crypto';
import {
  boundaryProblem,
  MAX_INBOUND_BOUNDARY_LENGTH,
  MultipartFailure,
  multipartBody,
  parseMultipart,
} from '../../../src/pacs/multipart.js';

/**
 * Issue 9: the multipart parser is liberal in what it accepts (boundaries longer than RFC 2046's
 * 70 characters, up to MAX_INBOUND_BOUNDARY_LENGTH), strict in what it writes (≤ 70), and refuses a
 * part with unreadable headers alone instead of failing the whole request.
 */

async function* once(buf: Buffer, chunk = 7): AsyncGenerator<Buffer> {
  for (let i = 0; i < buf.length; i += chunk) yield buf.subarray(i, i + chunk);
}

interface Seen {
  readonly headers: Record<string, string>;
  readonly body: string;
  readonly failure?: string;
}

async function collect(buf: Buffer, boundary: string, maxHeaderBytes?: number): Promise<Seen[]> {
  const out: Seen[] = [];
  for await (const p of parseMultipart(once(buf), boundary, maxHeaderBytes ? { maxHeaderBytes } : {})) {
    const chunks: Buffer[] = [];
    for await (const c of p.body) chunks.push(c as Buffer);
    out.push({
      headers: { ...p.headers },
      body: Buffer.concat(chunks).toString('latin1'),
      ...(p.headerFailure ? { failure: p.headerFailure.failure } : {}),
    });
  }
  return out;
}

const body = (b: string, parts: string[]): Buffer =>
  Buffer.from(`${parts.map((p) => `--${b}\r\n${p}\r\n`).join('')}--${b}--\r\n`, 'latin1');

describe('inbound boundaries (RFC 2046 §5.1.1, liberal length)', () => {
  test("Orthanc's 73-character boundary (two UUIDs) parses", async () => {
    const b = `${randomUUID()}-${randomUUID()}`;
    expect(b).toHaveLength(73);
    const got = await collect(body(b, ['Content-Type: application/dicom\r\n\r\nabc']), b);
    expect(got).toEqual([{ headers: { 'content-type': 'application/dicom' }, body: 'abc' }]);
  });
  test('256 characters with every bchar parse; 257 and illegal characters are refused with the rule', async () => {
    const all = "0123456789abcxyzABCXYZ'()+_,-./:=? ";
    const b256 = `${all.repeat(8).slice(0, 255)}Z`;
    expect(b256).toHaveLength(MAX_INBOUND_BOUNDARY_LENGTH);
    expect(await collect(body(b256, ['\r\nx']), b256)).toEqual([{ headers: {}, body: 'x' }]);
    const b257 = `${b256}Q`;
    await expect(collect(body(b257, ['\r\nx']), b257)).rejects.toMatchObject({
      failure: MultipartFailure.Malformed,
      code: 'request-invalid',
      message: expect.stringContaining('257 characters; at most 256'),
    });
    for (const bad of ['', 'ends-in-space ', 'semi;colon', 'quote"d', 'tab\there', 'ümlaut', 'a\r\nb']) {
      expect(boundaryProblem(bad, MAX_INBOUND_BOUNDARY_LENGTH)).toBeDefined();
      await expect(collect(Buffer.from('--x\r\n\r\n\r\n--x--'), bad)).rejects.toMatchObject({
        failure: MultipartFailure.Malformed,
      });
    }
  });
  test('what RadScribe writes stays within 70 characters', () => {
    expect(() => multipartBody([{ contentType: 'application/dicom', body: Buffer.from('x') }], 'a'.repeat(71))).toThrow(
      /at most 70/,
    );
    expect(() =>
      multipartBody([{ contentType: 'application/dicom', body: Buffer.from('x') }], 'a'.repeat(70)),
    ).not.toThrow();
  });
});

describe('hostile part headers are refused per part', () => {
  const B = 'hb';
  test('a header block over maxHeaderBytes refuses that part only; neighbours parse', async () => {
    const huge = `X-Big: ${'h'.repeat(5000)}\r\nContent-Type: application/dicom\r\n\r\nlost`;
    const got = await collect(body(B, ['Content-Type: application/dicom\r\n\r\none', huge, '\r\ntwo']), B, 1024);
    expect(got.map((g) => g.failure)).toEqual([undefined, MultipartFailure.BadPartHeaders, undefined]);
    expect(got[0]?.body).toBe('one');
    expect(got[1]?.headers).toEqual({});
    expect(got[2]?.body).toBe('two');
  });
  test('a header block with no blank line and no delimiter for longer than the cap', async () => {
    const noBlank = `--${B}\r\n${'x'.repeat(10_000)}\r\n--${B}\r\n\r\nok\r\n--${B}--`;
    const got = await collect(Buffer.from(noBlank), B, 1024);
    expect(got.map((g) => [g.failure, g.body.length <= 10_002])).toEqual([
      [MultipartFailure.BadPartHeaders, true],
      [undefined, true],
    ]);
    expect(got[1]?.body).toBe('ok');
  });
  test('a header line without a name refuses that part only', async () => {
    const got = await collect(body(B, ['no colon here\r\n\r\nbody', 'Content-Type: a/b\r\n\r\nfine']), B);
    expect(got.map((g) => [g.failure, g.body])).toEqual([
      [MultipartFailure.BadPartHeaders, 'body'],
      [undefined, 'fine'],
    ]);
  });
  test('headers directly followed by the delimiter: a part without a body', async () => {
    const raw = Buffer.from(`--${B}\r\nContent-Type: a/b\r\n--${B}\r\n\r\nnext\r\n--${B}--`);
    expect(await collect(raw, B)).toEqual([
      { headers: { 'content-type': 'a/b' }, body: '' },
      { headers: {}, body: 'next' },
    ]);
  });
});

describe('boundary strings inside part data', () => {
  test('"--boundary" inside a body, not followed by CRLF or "--", is body data', async () => {
    const B = 'in-data';
    const payload = `DICM\x00\r\n--${B}X\r\n--${B}\x00\x01--${B}\r\n\r\n--${B}-`;
    const raw = Buffer.concat([
      Buffer.from(`--${B}\r\nContent-Type: application/dicom\r\n\r\n`),
      Buffer.from(payload, 'latin1'),
      Buffer.from(`\r\n--${B}--`),
    ]);
    // Near misses: "--in-data" glued to other bytes, or followed by a single "-", are data.
    const got = await collect(raw, B);
    expect(got).toEqual([{ headers: { 'content-type': 'application/dicom' }, body: payload }]);
    // A whole delimiter line inside the data does end the part (RFC 2046 forbids it in data, so
    // the sender is wrong): the bytes after it are a second part, which the router then refuses.
    const split = await collect(Buffer.from(`--${B}\r\n\r\nhead\r\n--${B}\r\ntail\r\n--${B}--`), B);
    expect(split.map((p) => [p.body, p.failure])).toEqual([
      ['head', undefined],
      ['', MultipartFailure.BadPartHeaders],
    ]);
  });
});
