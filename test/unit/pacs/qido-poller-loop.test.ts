import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { DicomwebClient } from '../../../src/pacs/dicomweb-client.js';
import { QidoPoller } from '../../../src/pacs/qido-poller.js';
import { startTestServer, type TestHttpServer } from '../../support/http.js';
import { MemoryStudyTracker } from '../../support/memory-tracker.js';
import { RecordingSink } from '../../support/recording-sink.js';

/**
 * The poller's self-rescheduling loop against a real HTTP server on loopback: it polls on its
 * interval, backs off exponentially while the PACS fails, recovers, and stop() waits for the poll
 * in flight (STYLE §2.1: a self-rescheduling async loop, not node-cron).
 */
describe('QidoPoller loop', () => {
  let server: TestHttpServer;
  const hits: number[] = [];
  let failUntil = 0;
  let slowMs = 0;

  beforeAll(async () => {
    server = await startTestServer((app) => {
      app.get('/dicom-web/studies', async (_req, res) => {
        hits.push(Date.now());
        if (slowMs) await new Promise((r) => setTimeout(r, slowMs));
        if (hits.length <= failUntil) res.status(503).end();
        else res.type('application/dicom+json').send('[]');
      });
    });
  });
  afterAll(() => server.close());
  beforeEach(() => {
    hits.length = 0;
    failUntil = 0;
    slowMs = 0;
  });

  function poller(intervalMs: number) {
    const tmp = mkdtempSync(path.join(tmpdir(), 'rs-poll-'));
    return new QidoPoller({
      node: { name: 'pacs', client: new DicomwebClient({ baseUrl: `${server.url}/dicom-web`, timeoutMs: 5_000 }) },
      sink: new RecordingSink(tmp),
      tracker: new MemoryStudyTracker(),
      tmpDir: tmp,
      intervalMs,
      backoff: { initialMs: 100, maxMs: 400, factor: 2 },
    });
  }

  it('polls at once, then on its interval, until stopped', async () => {
    const p = poller(150);
    p.start();
    p.start(); // idempotent: still one loop
    await new Promise((r) => setTimeout(r, 520));
    await p.stop();
    const n = hits.length;
    expect(n).toBeGreaterThanOrEqual(2);
    expect(n).toBeLessThanOrEqual(5);
    await new Promise((r) => setTimeout(r, 300));
    expect(hits.length).toBe(n);
  });

  it('backs off exponentially while the PACS fails, then returns to its interval', async () => {
    failUntil = 3;
    const p = poller(50);
    p.start();
    await new Promise((r) => setTimeout(r, 1_100));
    await p.stop();
    const gaps = hits.slice(1).map((t, i) => t - (hits[i] as number));
    // Failures 1..3 are followed by 100, 200, 400 ms waits; success by the 50 ms interval.
    expect(gaps[0]).toBeGreaterThanOrEqual(90);
    expect(gaps[1]).toBeGreaterThanOrEqual(190);
    expect(gaps[2]).toBeGreaterThanOrEqual(390);
    expect(gaps[3]).toBeLessThan(gaps[2] as number);
  });

  it('stop() waits for the poll in flight', async () => {
    slowMs = 300;
    const p = poller(10_000);
    p.start();
    await new Promise((r) => setTimeout(r, 50));
    const t0 = Date.now();
    await p.stop();
    expect(Date.now() - t0).toBeGreaterThanOrEqual(200);
    expect(hits).toHaveLength(1);
  });
});
