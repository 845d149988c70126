import { UPSERT_STAGED } from '../../src/export/sr-export-ledger.js';
import { isJobTransition, JOB_TRANSITIONS, JobState } from '../../src/jobs/types.js';
import { backendName, type TestDatabase, testDatabase } from '../support/db.js';

/**
 * Issue 8: "illegal transitions are refused in SQL, not by convention. Same rule for jobs and
 * instances" (migration 0015). Rows are written here with plain SQL, as a second writer that bypasses
 * the owner modules would, so what is refused is refused by the database itself.
 */
jest.setTimeout(120_000);

let db: TestDatabase;
let seq = 0;
const uid = (): string => `1.2.826.0.1.3680043.10.7.${process.pid}.${Date.now() % 1e6}.${++seq}`;
const STATES = Object.values(JobState);

beforeAll(async () => {
  db = await testDatabase({ poolSize: 3 });
});
afterAll(async () => {
  await db?.close();
});

interface PgError {
  code?: string;
  constraint?: string;
  message?: string;
}
const errorOf = (p: Promise<unknown>): Promise<PgError | undefined> =>
  p.then(
    () => undefined,
    (e: unknown) => e as PgError,
  );

async function newStudy(): Promise<string> {
  const s = uid();
  await db.pool.query('INSERT INTO studies (study_instance_uid) VALUES ($1)', [s]);
  return s;
}

/** A job inserted as queued, then moved along legal transitions to `state`. */
async function jobIn(state: JobState): Promise<number> {
  const { rows } = await db.pool.query<{ id: number }>(
    `INSERT INTO jobs (kind, study_instance_uid, payload) VALUES ('describe-study', $1, '{}') RETURNING id`,
    [await newStudy()],
  );
  const id = rows[0]?.id as number;
  const path: Record<JobState, JobState[]> = {
    queued: [],
    running: ['running'],
    succeeded: ['running', 'succeeded'],
    failed: ['running', 'failed'],
    cancelled: ['cancelled'],
  };
  for (const next of path[state]) await setJobState(id, next);
  return id;
}

/** The running state carries a lease (CHECK jobs: running = locked_until set). */
function setJobState(id: number, state: string): Promise<unknown> {
  return db.pool.query(
    `UPDATE jobs SET state = $2,
       locked_by = CASE WHEN $2 = 'running' THEN 'test' END,
       locked_until = CASE WHEN $2 = 'running' THEN now() + interval '1 minute' END
     WHERE id = $1`,
    [id, state],
  );
}
async function jobState(id: number): Promise<string | undefined> {
  const { rows } = await db.pool.query<{ state: string }>('SELECT state FROM jobs WHERE id = $1', [id]);
  return rows[0]?.state;
}

// [REQ-JOB-LIFE-01]
describe(`job lifecycle in SQL (${backendName()})`, () => {
  it('the database transition table equals JOB_TRANSITIONS', async () => {
    const { rows } = await db.pool.query<{ from_state: string; to_state: string; via: string }>(
      'SELECT from_state, to_state, via FROM job_state_transitions',
    );
    const key = (t: { from: string; to: string; via: string }) => `${t.from} -> ${t.to} via ${t.via}`;
    expect(rows.map((r) => key({ from: r.from_state, to: r.to_state, via: r.via })).sort()).toEqual(
      JOB_TRANSITIONS.map(key).sort(),
    );
  });

  it.each(JOB_TRANSITIONS.map((t) => [t.from, t.to] as const))('allows %s → %s', async (from, to) => {
    const id = await jobIn(from);
    expect(await errorOf(setJobState(id, to))).toBeUndefined();
    expect(await jobState(id)).toBe(to);
  });

  const illegal = STATES.flatMap((from) =>
    STATES.filter((to) => to !== from && !isJobTransition(from, to)).map((to) => [from, to] as const),
  );
  it('terminal states are terminal and a queued job cannot finish without running', () => {
    expect(illegal).toEqual(
      expect.arrayContaining([
        ['succeeded', 'queued'],
        ['failed', 'queued'],
        ['cancelled', 'queued'],
        ['queued', 'succeeded'],
        ['running', 'cancelled'],
      ] as const),
    );
    expect(illegal).toHaveLength(STATES.length * (STATES.length - 1) - JOB_TRANSITIONS.length);
  });

  it.each(illegal)('refuses %s → %s in SQL and leaves the row as it was', async (from, to) => {
    const id = await jobIn(from);
    const err = await errorOf(setJobState(id, to));
    expect(err?.code).toBe('23514');
    expect(err?.constraint).toBe('jobs_state_transition');
    expect(err?.message).toContain(`${from} -> ${to}`);
    expect(await jobState(id)).toBe(from);
  });

  // Migration 0018: the outbox's copy of the draft (PHI) goes when its job ends for good.
  it.each(['failed', 'cancelled'] as const)(
    'a job that ends %s drops the draft bytes it staged; a retried one keeps them',
    async (end) => {
      const stage = async (jobId: number, sop: string) => {
        const { rows } = await db.pool.query<{ study_instance_uid: string }>(
          'SELECT study_instance_uid FROM jobs WHERE id = $1',
          [jobId],
        );
        await db.pool.query(UPSERT_STAGED, [
          sop,
          rows[0]?.study_instance_uid,
          jobId,
          'outbox',
          '1.2.840.10008.5.1.4.1.1.88.33',
          uid(),
          uid(),
          'sr',
          Buffer.from('DICM draft bytes'),
          'ab'.repeat(32),
          '{}',
        ]);
      };
      const bytesOf = async (sop: string) =>
        (
          await db.pool.query<{ part10: Buffer | null }>('SELECT part10 FROM sr_exports WHERE sop_instance_uid = $1', [
            sop,
          ])
        ).rows[0]?.part10 ?? null;
      const ending = await jobIn(end === 'failed' ? 'running' : 'queued');
      const retried = await jobIn('running');
      const [a, b] = [uid(), uid()];
      await stage(ending, a);
      await stage(retried, b);
      await setJobState(ending, end);
      await setJobState(retried, 'queued');
      expect(await bytesOf(a)).toBeNull();
      expect((await bytesOf(b))?.toString()).toBe('DICM draft bytes');
      const { rows } = await db.pool.query('SELECT 1 FROM sr_exports WHERE sop_instance_uid = $1', [a]);
      expect(rows).toHaveLength(1); // the ledger row stays
    },
  );

  it('a job starts as queued: inserting it in any other state is refused', async () => {
    const err = await errorOf(
      db.pool.query(
        `INSERT INTO jobs (kind, study_instance_uid, payload, state) VALUES ('describe-study', $1, '{}', 'succeeded')`,
        [await newStudy()],
      ),
    );
    expect(err?.constraint).toBe('jobs_state_transition');
  });
});

// [REQ-INST-LIFE-01]
describe(`instance lifecycle in SQL (${backendName()})`, () => {
  async function instance(): Promise<string> {
    const study = await newStudy();
    const sop = uid();
    await db.pool.query(
      `INSERT INTO instances (sop_instance_uid, study_instance_uid, series_instance_uid, sop_class_uid,
         transfer_syntax_uid, file_path, file_sha256, size_bytes, received_via)
       VALUES ($1, $2, $3, '1.2.840.10008.5.1.4.1.1.7', '1.2.840.10008.1.2.1', '/x', $4, 10, 'stow-rs')`,
      [sop, study, uid(), 'a'.repeat(64)],
    );
    return sop;
  }
  const update = (sop: string, set: string) =>
    errorOf(db.pool.query(`UPDATE instances SET ${set} WHERE sop_instance_uid = $1`, [sop]));

  it.each([
    ['study_instance_uid', 'study_instance_uid = (SELECT study_instance_uid FROM studies LIMIT 1 OFFSET 0)'],
    ['file_sha256', `file_sha256 = '${'b'.repeat(64)}'`],
    ['file_path', "file_path = '/elsewhere'"],
    ['size_bytes', 'size_bytes = 11'],
    ['received_via', "received_via = 'c-store'"],
  ])('refuses a change of %s of a live instance', async (_col, set) => {
    const sop = await instance();
    const err = await update(sop, set);
    expect(err?.constraint).toBe('instances_lifecycle');
  });

  it('allows the decode marker, then the quarantine; refuses undoing it and decoding a quarantined instance', async () => {
    const sop = await instance();
    expect(await update(sop, 'decode_started_at = now()')).toBeUndefined();
    expect(await update(sop, 'decode_started_at = NULL')).toBeUndefined();
    expect(await update(sop, "quarantined_at = now(), quarantine_reason = 'worker-crashed'")).toBeUndefined();
    expect((await update(sop, 'quarantined_at = NULL, quarantine_reason = NULL'))?.message).toContain(
      'quarantine is not undone',
    );
    expect((await update(sop, 'decode_started_at = now()'))?.message).toContain('is not decoded');
  });

  it('a deletion is not re-dated and a deleted instance is not decoded; a new receipt revives the row', async () => {
    const sop = await instance();
    expect(await update(sop, 'deleted_at = now()')).toBeUndefined();
    expect((await update(sop, "deleted_at = now() + interval '1 day'"))?.constraint).toBe('instances_lifecycle');
    expect((await update(sop, 'decode_started_at = now()'))?.constraint).toBe('instances_lifecycle');
    // INSERT_INSTANCE's ON CONFLICT revival: new content, deleted_at back to NULL.
    expect(
      await update(
        sop,
        `deleted_at = NULL, file_path = '/new', file_sha256 = '${'c'.repeat(64)}', received_at = now()`,
      ),
    ).toBeUndefined();
    const { rows } = await db.pool.query<{ file_path: string }>(
      'SELECT file_path FROM instances WHERE sop_instance_uid = $1',
      [sop],
    );
    expect(rows[0]?.file_path).toBe('/new');
    expect((await update(sop, "file_path = '/again'"))?.constraint).toBe('instances_lifecycle');
  });
});
