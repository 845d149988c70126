import { testDatabase, type TestDatabase } from '../support/db.js';
import { withTransaction } from '../../src/db/pool.js';

let db: TestDatabase;
beforeAll(async () => {
  db = await testDatabase();
  await db.pool.query('CREATE TABLE IF NOT EXISTS conc_probe (id int PRIMARY KEY, who text NOT NULL)');
});
afterAll(async () => db.close());

test('repro', async () => {
  const errors: string[] = [];
  const wrong: string[] = [];
  const committed: number[] = [];
  const started = Date.now();
  await Promise.all(
    Array.from({ length: 32 }, async (_, c) => {
      for (let k = 0; k < 5; k++) {
        const id = c * 100 + k;
        try {
          await withTransaction(db.pool, async (client) => {
            await client.query('INSERT INTO conc_probe (id, who) VALUES ($1, $2)', [id, `c${c}`]);
            const { rows } = await client.query<{ who: string }>('SELECT who FROM conc_probe WHERE id = $1', [id]);
            if (rows[0]?.who !== `c${c}`) wrong.push(`tx ${id}: ${JSON.stringify(rows)}`);
            if (k % 2 === 1) throw new Error('planned rollback');
          });
          committed.push(id);
        } catch (err) {
          if ((err as Error).message !== 'planned rollback') errors.push((err as Error).message);
        }
        try {
          const { rows } = await db.pool.query<{ v: number }>('SELECT $1::int AS v', [id]);
          if (rows[0]?.v !== id) wrong.push(`select ${id}: ${JSON.stringify(rows)}`);
          await db.pool.query('INSERT INTO conc_probe (id, who) VALUES ($1, $2)', [100000 + id, 'auto']);
          committed.push(100000 + id);
        } catch (err) {
          errors.push((err as Error).message);
        }
      }
    }),
  );
  const { rows } = await db.pool.query<{ id: number }>('SELECT id FROM conc_probe');
  const have = new Set(rows.map((r) => r.id));
  const lost = committed.filter((id) => !have.has(id));
  console.log({ ms: Date.now() - started, errors: errors.slice(0, 5), nErr: errors.length, wrong: wrong.slice(0, 5), nWrong: wrong.length, lost: lost.length, rows: rows.length, committed: committed.length });
  expect({ errors, wrong, lost }).toEqual({ errors: [], wrong: [], lost: [] });
});
