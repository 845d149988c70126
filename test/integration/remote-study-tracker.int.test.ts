import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { AuditEventKind, EventOutcome } from '../../src/audit/audit-codes.js';
import { ErrorCode } from '../../src/errors.js';
import { PgRemoteStudyTracker, RetrieveDecision } from '../../src/ingest/remote-study-tracker.js';
import { DicomwebClient } from '../../src/pacs/dicomweb-client.js';
import { QidoPoller, RetrieveOutcome, type RetrieveReport } from '../../src/pacs/qido-poller.js';
import { qidoPollerAuditHooks } from '../../src/services/qido-poller-audit.js';
import { backendName, type TestDatabase, testDatabase } from '../support/db.js';
import { startTestServer, type TestHttpServer } from '../support/http.js';
import { RecordingSink } from '../support/recording-sink.js';

/**
 * [REQ-ING-03] Bounded WADO-RS retrieve retries (issue 9, migration 0007): the backoff and the cap
 * are computed in SQL, a given-up study stays given up until its instance count changes, and every
 * attempt is audited with its outcome (PS3.15 A.5.1: 4 retrying, 8 given up; remote-query failure 8).
 */
let db: TestDatabase;
beforeAll(async () => {
  db = await testDatabase();
});
afterAll(async () => {
  await db?.close();
});

const POLICY = { maxAttempts: 3, backoff: { initialMs: 60_000, maxMs: 120_000, factor: 2 } };

describe(`PgRemoteStudyTracker retry cap (${backendName()})`, () => {
  it('schedules attempt n+1 after min(max, initial·factor^(n-1)) and gives up at the cap', async () => {
    const t = new PgRemoteStudyTracker(db.pool);
    expect(await t.observe('n', '1.2.10', 4)).toEqual({
      decision: RetrieveDecision.Attempt,
      attempt: 1,
      reopened: false,
      knownInstanceCount: null,
    });
    const t0 = Date.now();
    const f1 = await t.markFailed(
      'n',
      '1.2.10',
      ErrorCode.PacsUnavailable,
      'HTTP 503',
      { remoteInstanceCount: 4 },
      POLICY,
    );
    expect(f1.state).toBe('failed');
    expect(f1.attempts).toBe(1);
    expect((f1.nextAttemptAt?.getTime() ?? 0) - t0).toBeGreaterThan(55_000);
    expect((f1.nextAttemptAt?.getTime() ?? 0) - t0).toBeLessThan(65_000);
    // Within the backoff: not attempted.
    expect((await t.observe('n', '1.2.10', 4)).decision).toBe(RetrieveDecision.Backoff);
    const f2 = await t.markFailed(
      'n',
      '1.2.10',
      ErrorCode.PacsUnavailable,
      'HTTP 503',
      { remoteInstanceCount: 4 },
      POLICY,
    );
    expect((f2.nextAttemptAt?.getTime() ?? 0) - Date.now()).toBeGreaterThan(115_000); // 120 s (capped from 60·2)
    const f3 = await t.markFailed(
      'n',
      '1.2.10',
      ErrorCode.PacsRejected,
      'HTTP 403',
      { remoteInstanceCount: 4, failedInstances: ['1.2.10.1', '1.2.10.2'] },
      POLICY,
    );
    expect(f3).toEqual({ state: 'given-up', attempts: 3, nextAttemptAt: null });
    expect(await t.get('n', '1.2.10')).toMatchObject({
      state: 'given-up',
      attempts: 3,
      errorCode: ErrorCode.PacsRejected,
      failedInstances: ['1.2.10.1', '1.2.10.2'],
      remoteInstanceCount: 4,
    });
    // Same instance count: stays given up, poll after poll.
    expect((await t.observe('n', '1.2.10', 4)).decision).toBe(RetrieveDecision.GivenUp);
    expect((await t.observe('n', '1.2.10', null)).decision).toBe(RetrieveDecision.GivenUp);
    // The PACS now holds more of the study: reopened with a fresh budget.
    expect(await t.observe('n', '1.2.10', 5)).toEqual({
      decision: RetrieveDecision.Attempt,
      attempt: 1,
      reopened: true,
      // The count of the last failed attempt, until this attempt records its own.
      knownInstanceCount: 4,
    });
    await t.markRetrieved('n', '1.2.10', 5);
    expect(await t.get('n', '1.2.10')).toMatchObject({ state: 'retrieved', errorCode: null, failedInstances: [] });
    // Issue 11: a retrieved study reports the count it was retrieved at, so the poller sees the PACS gained instances.
    expect(await t.observe('n', '1.2.10', 6)).toMatchObject({
      decision: RetrieveDecision.Retrieved,
      knownInstanceCount: 5,
    });
    // Compared and found nothing missing (our own draft, say): the new count is remembered, the state kept.
    await t.markChecked('n', '1.2.10', 6);
    expect(await t.observe('n', '1.2.10', 6)).toMatchObject({
      decision: RetrieveDecision.Retrieved,
      knownInstanceCount: 6,
    });
    expect(await t.get('n', '1.2.10')).toMatchObject({ state: 'retrieved', remoteInstanceCount: 6 });
  });

  it('an operator reopen retries a given-up study at the next poll', async () => {
    const t = new PgRemoteStudyTracker(db.pool);
    await t.observe('n', '1.2.11', null);
    await t.markFailed('n', '1.2.11', ErrorCode.PacsRejected, 'x', {}, { ...POLICY, maxAttempts: 1 });
    expect((await t.observe('n', '1.2.11', null)).decision).toBe(RetrieveDecision.GivenUp);
    expect(await t.reopen('n', '1.2.11')).toBe(true);
    expect((await t.observe('n', '1.2.11', null)).decision).toBe(RetrieveDecision.Attempt);
    expect(await t.reopen('n', '1.2.999')).toBe(false);
  });
});

describe(`QidoPoller with PgRemoteStudyTracker and the audit hooks (${backendName()})`, () => {
  let server: TestHttpServer;
  let retrieves = 0;
  let searchFails = false;
  const STUDY = '1.2.826.0.1.3680043.10.9999.1';
  beforeAll(async () => {
    server = await startTestServer((app) => {
      app.get('/dicom-web/studies', (_req, res) => {
        if (searchFails) {
          res.status(503).end();
          return;
        }
        res
          .type('application/dicom+json')
          .send(JSON.stringify([{ '0020000D': { vr: 'UI', Value: [STUDY] }, '00201208': { vr: 'IS', Value: [2] } }]));
      });
      // The PACS refuses this study: a permanent 403 (no transfer syntax would help).
      app.get('/dicom-web/studies/:study', (_req, res) => {
        retrieves++;
        res.status(403).end();
      });
    });
  });
  afterAll(() => server.close());

  it('retries a failing study a bounded number of times, audits 4 then 8, then stops asking', async () => {
    const tmp = mkdtempSync(path.join(tmpdir(), 'rs-cap-'));
    try {
      const poller = new QidoPoller({
        node: { name: 'fake', client: new DicomwebClient({ baseUrl: `${server.url}/dicom-web`, timeoutMs: 5_000 }) },
        sink: new RecordingSink(tmp),
        tracker: new PgRemoteStudyTracker(db.pool),
        tmpDir: tmp,
        lookbackDays: Number.POSITIVE_INFINITY,
        maxRetrieveAttempts: 3,
        retrieveBackoff: { initialMs: 10, maxMs: 10, factor: 1 },
        ...qidoPollerAuditHooks(db.pool, 'test'),
      });
      const summaries = [];
      for (let i = 0; i < 6; i++) {
        summaries.push(await poller.pollOnce());
        await new Promise((r) => setTimeout(r, 30));
      }
      expect(retrieves).toBe(3);
      expect(summaries.map((s) => s.studiesFailed)).toEqual([1, 1, 1, 0, 0, 0]);
      expect(summaries.map((s) => s.studiesGivenUp)).toEqual([0, 0, 1, 0, 0, 0]);
      expect(summaries.map((s) => s.studiesDeferred)).toEqual([0, 0, 0, 1, 1, 1]);
      const { rows } = await db.pool.query<{ outcome: number; detail: Record<string, unknown> }>(
        `SELECT outcome, detail FROM audit_events WHERE kind = $1 AND study_instance_uid = $2 ORDER BY id`,
        [AuditEventKind.RemoteRetrieve, STUDY],
      );
      expect(rows.map((r) => r.outcome)).toEqual([
        EventOutcome.MinorFailure,
        EventOutcome.MinorFailure,
        EventOutcome.SeriousFailure,
      ]);
      expect(rows.map((r) => r.detail.attempt)).toEqual([1, 2, 3]);
      expect(rows[2]?.detail).toMatchObject({ outcome: 'given-up', errorCode: ErrorCode.PacsRejected, maxAttempts: 3 });
      expect(rows[0]?.detail.requests).toEqual(['study * 403']);

      // A failed search is audited as a failure too.
      searchFails = true;
      await expect(poller.pollOnce()).rejects.toMatchObject({ code: ErrorCode.PacsUnavailable });
      const q = await db.pool.query<{ outcome: number; detail: Record<string, unknown> }>(
        `SELECT outcome, detail FROM audit_events WHERE kind = $1 AND destination = 'fake' ORDER BY id`,
        [AuditEventKind.RemoteQuery],
      );
      expect(q.rows.map((r) => r.outcome)).toEqual([0, 0, 0, 0, 0, 0, EventOutcome.SeriousFailure]);
      expect(q.rows.at(-1)?.detail.errorCode).toBe(ErrorCode.PacsUnavailable);
    } finally {
      rmSync(tmp, { recursive: true, force: true });
    }
  });
});

/**
 * [REQ-AUD-TX] Issue 12 "Written in the same transaction as the state change it records": the
 * remote-retrieve event and the tracker's update commit together or not at all, for a retrieve that
 * failed (through the poller) and one that succeeded (the tracker's markRetrieved).
 */
describe(`remote-retrieve audit in the tracker's transaction (${backendName()})`, () => {
  let server: TestHttpServer;
  const STUDY = '1.2.826.0.1.3680043.10.9999.2';
  const NODE = 'fake-tx';
  beforeAll(async () => {
    server = await startTestServer((app) => {
      app.get('/dicom-web/studies', (_req, res) => {
        res
          .type('application/dicom+json')
          .send(JSON.stringify([{ '0020000D': { vr: 'UI', Value: [STUDY] }, '00201208': { vr: 'IS', Value: [1] } }]));
      });
      app.get('/dicom-web/studies/:study', (_req, res) => {
        res.status(403).end();
      });
    });
  });
  afterAll(() => server.close());

  const retrieveEvents = async (study: string) =>
    (
      await db.pool.query<{ outcome: number }>(
        'SELECT outcome FROM audit_events WHERE kind = $1 AND study_instance_uid = $2 ORDER BY id',
        [AuditEventKind.RemoteRetrieve, study],
      )
    ).rows.map((r) => r.outcome);
  const trackerRow = async (node: string, study: string) =>
    (
      await db.pool.query<{ state: string; attempts: number; error_code: string | null }>(
        'SELECT state, attempts, error_code FROM remote_studies WHERE remote_node = $1 AND study_instance_uid = $2',
        [node, study],
      )
    ).rows[0];

  it('a failed retrieve: an error after the audit insert rolls back both; without it both commit', async () => {
    const tmp = mkdtempSync(path.join(tmpdir(), 'rs-tx-'));
    try {
      const hooks = qidoPollerAuditHooks(db.pool, 'test');
      let failAfterAudit = true;
      const poller = new QidoPoller({
        node: { name: NODE, client: new DicomwebClient({ baseUrl: `${server.url}/dicom-web`, timeoutMs: 5_000 }) },
        sink: new RecordingSink(tmp),
        tracker: new PgRemoteStudyTracker(db.pool),
        tmpDir: tmp,
        lookbackDays: Number.POSITIVE_INFINITY,
        maxRetrieveAttempts: 3,
        retrieveBackoff: { initialMs: 10, maxMs: 10, factor: 1 },
        ...hooks,
        onRetrieve: async (node, study, report, q) => {
          await hooks.onRetrieve(node, study, report, q);
          if (failAfterAudit) throw new Error('forced failure after the audit insert');
        },
      });
      await expect(poller.pollOnce()).rejects.toThrow('forced failure after the audit insert');
      expect(await retrieveEvents(STUDY)).toEqual([]);
      // observe() committed the sighting before the attempt; the failed attempt left no trace.
      expect(await trackerRow(NODE, STUDY)).toEqual({ state: 'seen', attempts: 0, error_code: null });

      failAfterAudit = false;
      await poller.pollOnce();
      expect(await retrieveEvents(STUDY)).toEqual([EventOutcome.MinorFailure]);
      expect(await trackerRow(NODE, STUDY)).toEqual({
        state: 'failed',
        attempts: 1,
        error_code: ErrorCode.PacsRejected,
      });
    } finally {
      rmSync(tmp, { recursive: true, force: true });
    }
  });

  it('a retrieved study: markRetrieved and its event commit or roll back together', async () => {
    const study = '1.2.826.0.1.3680043.10.9999.3';
    const t = new PgRemoteStudyTracker(db.pool);
    await t.observe(NODE, study, 1);
    const hooks = qidoPollerAuditHooks(db.pool, 'test');
    const report: RetrieveReport = {
      stored: 1,
      duplicate: 0,
      failed: 0,
      outcome: RetrieveOutcome.Retrieved,
      attempt: 1,
      maxAttempts: 3,
      failedInstances: [],
      transcodedInstances: [],
      requests: [],
      reopened: false,
    };
    await expect(
      t.markRetrieved(NODE, study, 1, async (q) => {
        await hooks.onRetrieve(NODE, study, report, q);
        throw new Error('forced failure after the audit insert');
      }),
    ).rejects.toThrow('forced failure after the audit insert');
    expect(await retrieveEvents(study)).toEqual([]);
    expect((await trackerRow(NODE, study))?.state).toBe('seen');

    await t.markRetrieved(NODE, study, 1, async (q) => {
      await hooks.onRetrieve(NODE, study, report, q);
    });
    expect(await retrieveEvents(study)).toEqual([EventOutcome.Success]);
    expect((await trackerRow(NODE, study))?.state).toBe('retrieved');
  });
});
