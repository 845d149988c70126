import { inTransaction, withTransaction } from '../../src/db/pool.js';
import { backendName, type TestDatabase, testDatabase } from '../support/db.js';

jest.setTimeout(60_000);

// [REQ-DB-02] one transaction helper (issue 8): commit on success, rollback on any error.
describe(`withTransaction / inTransaction (${backendName()})`, () => {
  let db: TestDatabase;
  beforeAll(async () => {
    db = await testDatabase({ migrate: false });
    await db.pool.query('CREATE TABLE tx_probe (v integer PRIMARY KEY)');
  });
  afterAll(async () => db?.close());

  const values = async () =>
    (await db.pool.query<{ v: number }>('SELECT v FROM tx_probe ORDER BY v')).rows.map((r) => r.v);

  it('commits what fn wrote and returns its value', async () => {
    const out = await withTransaction(db.pool, async (c) => {
      await c.query('INSERT INTO tx_probe VALUES (1)');
      return 'done';
    });
    expect(out).toBe('done');
    expect(await values()).toEqual([1]);
  });

  it('rolls back everything fn wrote when it throws, and rethrows', async () => {
    await expect(
      withTransaction(db.pool, async (c) => {
        await c.query('INSERT INTO tx_probe VALUES (2)');
        throw new Error('boom');
      }),
    ).rejects.toThrow('boom');
    // A failed statement also aborts the whole transaction.
    await expect(
      withTransaction(db.pool, async (c) => {
        await c.query('INSERT INTO tx_probe VALUES (3)');
        await c.query('INSERT INTO tx_probe VALUES (1)'); // duplicate key
      }),
    ).rejects.toMatchObject({ code: '23505' });
    expect(await values()).toEqual([1]);
  });

  it('inTransaction runs several transactions on one held client, which stays usable after a rollback', async () => {
    const client = await db.pool.connect();
    try {
      await expect(
        inTransaction(client, async (c) => {
          await c.query('INSERT INTO tx_probe VALUES (4)');
          throw new Error('first fails');
        }),
      ).rejects.toThrow('first fails');
      await inTransaction(client, async (c) => {
        await c.query('INSERT INTO tx_probe VALUES (5)');
      });
    } finally {
      client.release();
    }
    expect(await values()).toEqual([1, 5]);
  });
});
