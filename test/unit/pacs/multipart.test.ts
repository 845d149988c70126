import type { MultipartLimits } from '../../../src/pacs/multipart.js';
import { MultipartFailure, multipartBody, multipartBodyLength, parseMultipart } from '../../../src/pacs/multipart.js';

async function* chunked(buf: Buffer, cuts: number[]): AsyncGenerator<Buffer> {
  let at = 0;
  for (const c of cuts) {
    yield buf.subarray(at, c);
    at = c;
  }
  yield buf.subarray(at);
}

async function collect(source: AsyncIterable<Buffer>, boundary: string, limits: Partial<MultipartLimits> = {}) {
  const parts: Array<{ headers: Record<string, string>; body: string }> = [];
  for await (const p of parseMultipart(source, boundary, limits)) {
    const chunks: Buffer[] = [];
    for await (const c of p.body) chunks.push(c as Buffer);
    parts.push({ headers: { ...p.headers }, body: Buffer.concat(chunks).toString('latin1') });
  }
  return parts;
}

const B = 'XyZ';
const BODY = Buffer.from(
  `\r\npreamble\r\n--${B}\r\nContent-Type: application/dicom\r\n\r\nfirst --XyZ not at line start\r\n--XyZa still body\r\n--${B}  \r\nContent-Type: text/plain\r\nX-A: 1\r\n\r\n\r\n--${B}--\r\nepilogue`,
  'latin1',
);
const EXPECTED = [
  { headers: { 'content-type': 'application/dicom' }, body: 'first --XyZ not at line start\r\n--XyZa still body' },
  { headers: { 'content-type': 'text/plain', 'x-a': '1' }, body: '' },
];

describe('multipart/related parser (RFC 2046 §5.1)', () => {
  test('same parts for a chunk cut at every byte offset (and every pair of offsets)', async () => {
    for (let i = 0; i <= BODY.length; i++) expect(await collect(chunked(BODY, [i]), B)).toEqual(EXPECTED);
    for (let i = 0; i < BODY.length; i += 3)
      for (let j = i; j < BODY.length; j += 5) expect(await collect(chunked(BODY, [i, j]), B)).toEqual(EXPECTED);
  });
  test('one byte per chunk', async () => {
    expect(
      await collect(
        chunked(
          BODY,
          Array.from({ length: BODY.length }, (_, i) => i),
        ),
        B,
      ),
    ).toEqual(EXPECTED);
  });
  test('missing close delimiter → truncated', async () => {
    const cut = BODY.subarray(0, BODY.indexOf(`--${B}--`) - 2);
    await expect(collect(chunked(cut, [7]), B)).rejects.toMatchObject({
      failure: MultipartFailure.Truncated,
      code: 'request-invalid',
    });
  });
  test('no boundary at all → malformed', async () => {
    await expect(collect(chunked(Buffer.from('just text'), []), B)).rejects.toMatchObject({
      failure: MultipartFailure.Malformed,
    });
  });
  test('a part over maxPartBytes fails alone; later parts still parse', async () => {
    const body = Buffer.from(`--${B}\r\n\r\n${'a'.repeat(100)}\r\n--${B}\r\n\r\nok\r\n--${B}--`);
    const seen: string[] = [];
    for await (const p of parseMultipart(chunked(body, [10, 50]), B, { maxPartBytes: 20 })) {
      try {
        const chunks: Buffer[] = [];
        for await (const c of p.body) chunks.push(c as Buffer);
        seen.push(Buffer.concat(chunks).toString());
      } catch (err) {
        seen.push((err as { failure: string }).failure);
      }
    }
    expect(seen).toEqual([MultipartFailure.PartTooLarge, 'ok']);
  });
  test('total cap → total-too-large', async () => {
    await expect(collect(chunked(BODY, [10, 20, 30]), B, { maxTotalBytes: 25 })).rejects.toMatchObject({
      failure: MultipartFailure.TotalTooLarge,
    });
  });
  test('unread bodies are discarded and parsing continues', async () => {
    const n: number[] = [];
    for await (const p of parseMultipart(chunked(BODY, [5]), B)) n.push(p.index);
    expect(n).toEqual([0, 1]);
  });
  test('writer round-trips through the parser and its length is exact', async () => {
    const payload = Buffer.from(`binary \r\n--${B} but a different boundary is used\x00\xff`, 'latin1');
    const parts = [
      { contentType: 'application/dicom', body: payload },
      { contentType: 'application/dicom', body: new Uint8Array([1, 2, 3]) },
    ];
    const chunks: Buffer[] = [];
    for await (const c of multipartBody(parts, 'bnd')) chunks.push(c as Buffer);
    const all = Buffer.concat(chunks);
    expect(all.length).toBe(await multipartBodyLength(parts, 'bnd'));
    const got = await collect(chunked(all, [3]), 'bnd');
    expect(got.map((g) => g.body)).toEqual([payload.toString('latin1'), '\x01\x02\x03']);
  });
});
