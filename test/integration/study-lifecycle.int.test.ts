import { cpSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { migrate } from '../../src/db/migrate.js';
import {
  getStudy,
  getStudyState,
  isStudyTransition,
  recordReceipt,
  STUDY_TRANSITIONS,
  StudyState,
  VERSION_OPENING_STATES,
} from '../../src/ingest/study-lifecycle.js';
import { MIGRATIONS_DIR } from '../../src/runtime-paths.js';
import { backendName, type TestDatabase, testDatabase } from '../support/db.js';

jest.setTimeout(120_000);

let db: TestDatabase;
let seq = 0;
const uid = (): string => `1.2.826.0.1.3680043.10.7.${process.pid}.${Date.now() % 1e6}.${++seq}`;
const STATES = Object.values(StudyState);

/** Shortest path of table transitions from 'receiving' to `to` (each state is reachable). */
function pathTo(to: StudyState): StudyState[] {
  const prev = new Map<StudyState, StudyState | null>([[StudyState.Receiving, null]]);
  const queue: StudyState[] = [StudyState.Receiving];
  while (queue.length) {
    const s = queue.shift() as StudyState;
    for (const t of STUDY_TRANSITIONS.filter((x) => x.from === s && !prev.has(x.to))) {
      prev.set(t.to, s);
      queue.push(t.to);
    }
  }
  if (!prev.has(to)) throw new Error(`${to} is unreachable from receiving`);
  const out: StudyState[] = [];
  for (let s: StudyState | null = to; s && s !== StudyState.Receiving; s = prev.get(s) ?? null) out.unshift(s);
  return out;
}

/** A new study brought to `state` along legal transitions only. */
async function studyIn(state: StudyState): Promise<string> {
  const s = uid();
  await db.pool.query('INSERT INTO studies (study_instance_uid) VALUES ($1)', [s]);
  for (const next of pathTo(state))
    await db.pool.query('UPDATE studies SET state = $2 WHERE study_instance_uid = $1', [s, next]);
  expect(await getStudyState(db.pool, s)).toBe(state);
  return s;
}

/** Change the state as a writer following the table would: a new-version transition also bumps the version. */
async function setState(s: string, state: string): Promise<unknown> {
  return db.pool
    .query(
      `UPDATE studies SET state = $2,
         version = CASE WHEN state = ANY($3::text[]) AND $2 = 'receiving' THEN version + 1 ELSE version END
       WHERE study_instance_uid = $1`,
      [s, state, [...VERSION_OPENING_STATES]],
    )
    .then(
      () => undefined,
      (e: unknown) => e,
    );
}

/** A plain UPDATE of the state and version, as a writer ignoring the version rule would. */
async function setRaw(s: string, state: string, version: number): Promise<{ code?: string; constraint?: string }> {
  return db.pool
    .query('UPDATE studies SET state = $2, version = $3 WHERE study_instance_uid = $1', [s, state, version])
    .then(
      () => ({}),
      (e: unknown) => e as { code?: string; constraint?: string },
    );
}

beforeAll(async () => {
  db = await testDatabase({ poolSize: 3 });
});
afterAll(async () => {
  await db?.close();
});

// [REQ-STUDY-01] One lifecycle owner for `studies`; illegal transitions refused in SQL (issue 8).
describe(`study lifecycle in SQL (${backendName()})`, () => {
  it('the database transition table equals STUDY_TRANSITIONS', async () => {
    const { rows } = await db.pool.query<{ from_state: string; to_state: string; event: string }>(
      'SELECT from_state, to_state, event FROM study_state_transitions ORDER BY 1, 2',
    );
    const key = (t: { from: string; to: string; on: string }) => `${t.from} -> ${t.to} on ${t.on}`;
    expect(rows.map((r) => key({ from: r.from_state, to: r.to_state, on: r.event })).sort()).toEqual(
      STUDY_TRANSITIONS.map(key).sort(),
    );
  });

  it('the CHECK constraint allows exactly the StudyState values', async () => {
    const { rows } = await db.pool.query<{ def: string }>(
      `SELECT pg_get_constraintdef(c.oid) AS def FROM pg_constraint c
       WHERE c.conname = 'studies_state_check' AND c.conrelid = 'studies'::regclass`,
    );
    expect(rows).toHaveLength(1);
    const values = [...(rows[0]?.def ?? '').matchAll(/'([a-z]+)'/g)].map((m) => m[1]).sort();
    expect(values).toEqual([...STATES].sort());
  });

  it('every state is reachable from receiving and every state can receive again', () => {
    for (const s of STATES) expect(() => pathTo(s)).not.toThrow();
    for (const s of STATES.filter((x) => x !== StudyState.Receiving))
      expect(isStudyTransition(s, StudyState.Receiving)).toBe(true);
  });

  it.each(STUDY_TRANSITIONS.map((t) => [t.from, t.to, t.on] as const))('allows %s → %s (%s)', async (from, to) => {
    const s = await studyIn(from);
    expect(await setState(s, to)).toBeUndefined();
    expect(await getStudyState(db.pool, s)).toBe(to);
  });

  const illegal = STATES.flatMap((from) =>
    STATES.filter((to) => to !== from && !isStudyTransition(from, to)).map((to) => [from, to] as const),
  );
  it('there are illegal transitions to refuse (the table is not complete)', () => {
    expect(illegal.length).toBeGreaterThan(20);
    expect(illegal).toEqual(
      expect.arrayContaining([['receiving', 'exported'] as const, ['exported', 'failed'] as const]),
    );
  });

  it.each(illegal)('refuses %s → %s in SQL and leaves the row as it was', async (from, to) => {
    const s = await studyIn(from);
    const err = (await setState(s, to)) as { code?: string; constraint?: string; message?: string } | undefined;
    expect(err?.code).toBe('23514');
    expect(err?.constraint).toBe('studies_state_transition');
    expect(err?.message).toContain(`${from} -> ${to}`);
    expect(await getStudyState(db.pool, s)).toBe(from);
  });

  it('an update that keeps the state is no transition (a further instance of a receiving study)', async () => {
    const s = await studyIn(StudyState.Receiving);
    expect(await setState(s, 'receiving')).toBeUndefined();
    const e = await studyIn(StudyState.Exported);
    expect(await setState(e, 'exported')).toBeUndefined();
  });

  it('a study starts as receiving: inserting any other state is refused', async () => {
    const err = (await db.pool
      .query(`INSERT INTO studies (study_instance_uid, state) VALUES ($1, 'exported')`, [uid()])
      .catch((e: unknown) => e)) as { code?: string; constraint?: string };
    expect(err.code).toBe('23514');
    expect(err.constraint).toBe('studies_state_transition');
  });

  it('a state outside the set is refused by the CHECK constraint', async () => {
    const s = await studyIn(StudyState.Exported);
    const err = (await setState(s, 'done')) as { code?: string; constraint?: string };
    expect(err?.code).toBe('23514');
  });
});

// [REQ-STUDY-03] Versions of a study's result (issue 11, migration 0019): a new instance after a job
// claimed the study opens version N+1; the trigger refuses every other change of the version.
describe(`study versions in SQL (${backendName()})`, () => {
  it('the database marks exactly the newVersion rows of STUDY_TRANSITIONS', async () => {
    const { rows } = await db.pool.query<{ from_state: string; to_state: string }>(
      'SELECT from_state, to_state FROM study_state_transitions WHERE new_version ORDER BY 1, 2',
    );
    expect(rows.map((r) => `${r.from_state} -> ${r.to_state}`)).toEqual(
      STUDY_TRANSITIONS.filter((t) => 'newVersion' in t)
        .map((t) => `${t.from} -> ${t.to}`)
        .sort(),
    );
    expect([...VERSION_OPENING_STATES].sort()).toEqual(['described', 'exported', 'expunged', 'failed', 'processing']);
  });

  it.each(STATES.filter((x) => x !== StudyState.Receiving))(
    'a receipt in state %s keeps or bumps the version as the table says',
    async (from) => {
      const s = await studyIn(from);
      expect((await getStudy(db.pool, s))?.version).toBe(1);
      const v = (await recordReceipt(db.pool, s, `${s}.1`)).version;
      expect(v).toBe(VERSION_OPENING_STATES.includes(from) ? 2 : 1);
      const after = await getStudy(db.pool, s);
      expect(after?.state).toBe(StudyState.Receiving);
      expect(after?.version).toBe(v);
      // A further instance of the now receiving study joins that version.
      expect((await recordReceipt(db.pool, s, `${s}.2`)).version).toBe(v);
    },
  );

  it('refuses a new-version transition without the +1, a +2, a version change on another transition, and a decrease', async () => {
    const e = await studyIn(StudyState.Exported);
    for (const bad of [1, 3]) {
      const err = await setRaw(e, 'receiving', bad);
      expect(err.code).toBe('23514');
      expect(err.constraint).toBe('studies_version_transition');
    }
    expect(await getStudy(db.pool, e)).toMatchObject({ state: 'exported', version: 1 });
    const q = await studyIn(StudyState.Queued);
    const err = await setRaw(q, 'receiving', 2);
    expect(err.constraint).toBe('studies_version_transition');
    expect(await setRaw(e, 'receiving', 2)).toEqual({});
    const down = await setRaw(e, 'receiving', 1);
    expect(down.constraint).toBe('studies_version_transition');
    expect(await getStudy(db.pool, e)).toMatchObject({ state: 'receiving', version: 2 });
  });

  it('a study starts at version 1', async () => {
    const err = (await db.pool
      .query('INSERT INTO studies (study_instance_uid, version) VALUES ($1, 2)', [uid()])
      .catch((e: unknown) => e)) as { code?: string; constraint?: string };
    expect(err.code).toBe('23514');
    expect(err.constraint).toBe('studies_version_transition');
  });
});

// [REQ-STUDY-02] Migration 0005 moves existing rows to the new state set.
describe(`migration 0005 (${backendName()})`, () => {
  it("turns 'done' into 'exported' and keeps the other states", async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'radscribe-mig5-'));
    const older = await testDatabase({ migrate: false });
    try {
      for (const f of readdirSync(MIGRATIONS_DIR).filter((n) => n.endsWith('.sql') && n < '0005'))
        cpSync(path.join(MIGRATIONS_DIR, f), path.join(dir, f));
      await migrate(older.pool, dir);
      const rows: [string, string][] = [
        ['1.2.3.1', 'done'],
        ['1.2.3.2', 'receiving'],
        ['1.2.3.3', 'queued'],
        ['1.2.3.4', 'processing'],
        ['1.2.3.5', 'failed'],
      ];
      for (const [s, state] of rows)
        await older.pool.query('INSERT INTO studies (study_instance_uid, state) VALUES ($1, $2)', [s, state]);
      expect((await migrate(older.pool)).applied).toContain('0005');
      const { rows: after } = await older.pool.query<{ study_instance_uid: string; state: string }>(
        'SELECT study_instance_uid, state FROM studies ORDER BY 1',
      );
      expect(after.map((r) => [r.study_instance_uid, r.state])).toEqual([
        ['1.2.3.1', 'exported'],
        ['1.2.3.2', 'receiving'],
        ['1.2.3.3', 'queued'],
        ['1.2.3.4', 'processing'],
        ['1.2.3.5', 'failed'],
      ]);
    } finally {
      await older.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
