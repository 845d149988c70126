/**
 * Both database backends in one run (issue #2): when DATABASE_URL is set (CI), the queue, audit and
 * instance-store suites run against the PostgreSQL server in their own files; this file runs the
 * same suites again on the embedded PGlite. Without DATABASE_URL those files already use PGlite.
 */
if (process.env.DATABASE_URL) {
  const previous = process.env.RADSCRIBE_TEST_DB;
  process.env.RADSCRIBE_TEST_DB = 'pglite';
  require('./jobs.int.test');
  require('./audit.int.test');
  require('./audit-tamper.int.test');
  require('./audit-query.int.test');
  require('./audit-retention.int.test');
  require('./instance-store.int.test');
  require('./db.int.test');
  afterAll(() => {
    if (previous === undefined) delete process.env.RADSCRIBE_TEST_DB;
    else process.env.RADSCRIBE_TEST_DB = previous;
  });
} else {
  describe.skip('suites on PGlite (already run on PGlite: DATABASE_URL is not set)', () => {
    it('runs in the other files', () => undefined);
  });
}
