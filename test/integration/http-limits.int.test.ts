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
      http: {
        host: '127.0.0.1',
        port: 0,
        limits: { requestsPerMinute: 5, maxConcurrentUploads: 1, authFailuresPerMinute: 3 },
      },
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

  // Last in the file: it blocks 127.0.0.1 for about 20 s (3 failures per minute).
  it('a flood of bad credentials from one address: 401 ×3, then 429 without lookups or an audit row each', async () => {
    const { rows: before } = await t.gw.db.pool.query<{ id: string }>(
      'SELECT COALESCE(max(id), 0)::text AS id FROM audit_events',
    );
    const bad = { authorization: 'Bearer rsk_0000000000000000000000000000000000000000000' };
    const statuses: number[] = [];
    let retryAfter: string | null = null;
    for (let i = 0; i < 50; i++) {
      const res = await fetch(`${t.gw.baseUrl}/api/jobs`, { headers: bad });
      await res.arrayBuffer();
      statuses.push(res.status);
      if (res.status === 429) retryAfter = res.headers.get('retry-after');
    }
    expect(statuses.slice(0, 3)).toEqual([401, 401, 401]);
    expect(new Set(statuses.slice(3))).toEqual(new Set([429]));
    expect(Number(retryAfter)).toBeGreaterThanOrEqual(1);
    expect(Number(retryAfter)).toBeLessThanOrEqual(20);
    // A valid token from the blocked address waits too (address-based block).
    expect((await fetch(`${t.gw.baseUrl}/api/jobs`, { headers: t.auth('operator') })).status).toBe(429);
    const { rows } = await t.gw.db.pool.query<{ outcome: number; detail: Record<string, unknown> }>(
      "SELECT outcome, detail FROM audit_events WHERE id > $1 AND kind = 'user-authentication' ORDER BY id",
      [before[0]?.id ?? '0'],
    );
    // Three audited refusals, not 50: the third starts the block and is a serious failure.
    expect(rows.map((r) => [r.outcome, r.detail.addressBlocked ?? false])).toEqual([
      [4, false],
      [4, false],
      [8, true],
    ]);
  });
});
