import http from 'node:http';
import { backends, startTestGateway, type TestGateway } from '../support/gateway.js';

/**
 * Issue 12, Access, limits: a token over its request rate gets 429 with Retry-After (RFC 6585 §4),
 * an upload beyond the concurrent STOW-RS uploads 503 with Retry-After, a too large token API body
 * 413. Real gateway on port 0.
 */
describe.each(backends())('HTTP limits on %s', (backend) => {
  let t: TestGateway;
  beforeAll(async () => {
    t = await startTestGateway(backend, {
      http: { host: '127.0.0.1', port: 0, limits: { requestsPerMinute: 5, maxConcurrentUploads: 1 } },
    });
  });
  afterAll(() => t?.close());

  it('a sixth request in a minute is 429 with Retry-After; other tokens are not affected', async () => {
    const statuses: number[] = [];
    for (let i = 0; i < 6; i++) {
      const res = await fetch(`${t.gw.baseUrl}/api/jobs`, { headers: t.auth('operator') });
      await res.arrayBuffer();
      statuses.push(res.status);
      if (res.status === 429) {
        expect(Number(res.headers.get('retry-after'))).toBeGreaterThanOrEqual(1);
        expect(Number(res.headers.get('retry-after'))).toBeLessThanOrEqual(12);
      }
    }
    expect(statuses).toEqual([200, 200, 200, 200, 200, 429]);
    expect((await fetch(`${t.gw.baseUrl}/api/audit`, { headers: t.auth('auditor') })).status).toBe(200);
  });

  it('a second upload while one is in flight is 503 with Retry-After', async () => {
    const url = new URL(`${t.gw.baseUrl}/dicomweb/studies`);
    // An upload that sends its head and part of its body, then waits.
    const first = http.request(url, {
      method: 'POST',
      headers: {
        ...t.auth('ingest'),
        'content-type': 'multipart/related; type="application/dicom"; boundary=b',
        'transfer-encoding': 'chunked',
      },
    });
    const firstDone = new Promise<number>((resolve) => {
      first.on('response', (res) => {
        res.resume();
        resolve(res.statusCode ?? 0);
      });
      first.on('error', () => resolve(0));
    });
    first.write('--b\r\nContent-Type: application/dicom\r\n\r\n');
    await new Promise((r) => setTimeout(r, 300));
    const second = await fetch(url, {
      method: 'POST',
      headers: { ...t.auth('ingest'), 'content-type': 'application/json' },
      body: '{}',
    });
    expect(second.status).toBe(503);
    expect(second.headers.get('retry-after')).toMatch(/^\d+$/);
    first.end('not dicom\r\n--b--\r\n');
    expect(await firstDone).toBeGreaterThanOrEqual(400);
    // Released: the next upload gets past the gate (415: not multipart).
    const third = await fetch(url, {
      method: 'POST',
      headers: { ...t.auth('ingest'), 'content-type': 'application/json' },
      body: '{}',
    });
    expect(third.status).toBe(415);
  });

  it('a token API body over 16 KiB is 413, not JSON 400', async () => {
    const post = (body: string) =>
      fetch(`${t.gw.baseUrl}/api/tokens`, {
        method: 'POST',
        headers: { ...t.auth('admin'), 'content-type': 'application/json' },
        body,
      });
    expect((await post(JSON.stringify({ name: 'x'.repeat(20_000), role: 'ingest' }))).status).toBe(413);
    expect((await post('{not json')).status).toBe(400);
  });
});
