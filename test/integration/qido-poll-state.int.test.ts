import { ErrorCode } from '../../src/errors.js';
import { PgRemoteStudyTracker } from '../../src/ingest/remote-study-tracker.js';
import { PgQidoPollState } from '../../src/pacs/qido-poll-state.js';
import { backendName, type TestDatabase, testDatabase } from '../support/db.js';

/**
 * The QIDO-RS poller's high-water mark and watch list (issue 11, migration 0025) on the real schema:
 * an incremental poll moves the window end and keeps the last full-scan time; the watch list holds
 * the studies first seen within watchMs and every one not yet retrieved, per node.
 */
let db: TestDatabase;
beforeAll(async () => {
  db = await testDatabase();
});
afterAll(async () => {
  await db?.close();
});

describe(`PgQidoPollState (${backendName()})`, () => {
  it('no mark, then a full scan sets both times, then an incremental poll moves only the window end', async () => {
    const s = new PgQidoPollState(db.pool);
    expect(await s.mark('a')).toBeNull();
    const t1 = new Date('2026-12-04T10:00:00.123Z');
    await s.saveMark('a', t1, t1);
    expect(await s.mark('a')).toEqual({ windowEnd: t1, lastFullScanAt: t1 });
    const t2 = new Date('2026-12-04T10:01:00Z');
    await s.saveMark('a', t2, null);
    expect(await s.mark('a')).toEqual({ windowEnd: t2, lastFullScanAt: t1 });
    const t3 = new Date('2026-12-04T11:01:00Z');
    await s.saveMark('a', t3, t3);
    expect(await s.mark('a')).toEqual({ windowEnd: t3, lastFullScanAt: t3 });
    // Per node.
    expect(await s.mark('b')).toBeNull();
  });

  it('watched: recent studies of the node in any state, older ones only while not retrieved', async () => {
    const tracker = new PgRemoteStudyTracker(db.pool);
    const s = new PgQidoPollState(db.pool);
    await tracker.observe('w', '1.2.1', 1);
    await tracker.markRetrieved('w', '1.2.1', 1);
    await tracker.observe('w', '1.2.2', 1);
    await tracker.observe('w', '1.2.3', 1);
    await tracker.markFailed('w', '1.2.3', ErrorCode.PacsUnavailable, 'down');
    await tracker.observe('w', '1.2.4', 1);
    await tracker.markRetrieved('w', '1.2.4', 1);
    await tracker.observe('other', '1.2.9', 1);
    // Age two of them: first seen a day ago.
    await db.pool.query(
      `UPDATE remote_studies SET first_seen_at = now() - interval '1 day' WHERE study_instance_uid IN ('1.2.1', '1.2.3')`,
    );
    const hour = 3_600_000;
    expect((await s.watched('w', hour, 100)).sort()).toEqual(['1.2.2', '1.2.3', '1.2.4']);
    // With watchMs 0 only the not-yet-retrieved ones.
    expect((await s.watched('w', 0, 100)).sort()).toEqual(['1.2.2', '1.2.3']);
    expect((await s.watched('w', 2 * 86_400_000, 100)).sort()).toEqual(['1.2.1', '1.2.2', '1.2.3', '1.2.4']);
    expect(await s.watched('w', 2 * 86_400_000, 2)).toHaveLength(2);
  });
});
