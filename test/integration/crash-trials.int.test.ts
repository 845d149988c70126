import { type CrashTrialResult, KillTrigger, runCrashTrial, seededRandom } from '../support/crash-trial.js';

/**
 * [REQ-REL-01] Crash trials (issue 9), the CI-sized set: the real gateway process (bin/radscribe
 * serve, compiled dist/) killed with SIGKILL once per trial — during start-up or a random moment,
 * right after an instance commit (a multi-part STOW-RS request cut between its parts), during
 * inference, the moment the SR file appears at the destination, and after a STOW-RS PACS stored the SR
 * but before the gateway read the answer (so before its ledger row) — then
 * restarted on the same database and storage while the client re-sends what was not acknowledged.
 * Each trial must end with every acknowledged instance stored intact, exactly one SR per study
 * (file and ledger row), `radscribe audit verify` passing, no job or study pending, and no spool or
 * temp file left. The ≥ 100-trial run is `npm run bench -- crash` (bench/crash-trials.bench.ts).
 */
const BACKEND = process.env.DATABASE_URL ? 'postgresql' : 'pglite';
const random = seededRandom(Number(process.env.CRASH_TRIAL_SEED ?? 5));

function expectClean(r: CrashTrialResult): void {
  // The problems list names each broken invariant (and the kept trial directory) on failure.
  expect({ problems: r.problems, kept: r.where }).toEqual({ problems: [], kept: '' });
  expect(r.acknowledged).toBe(r.sent);
  expect(r.stored).toBe(r.sent);
  expect(r.missing).toEqual([]);
  expect(r.srFilesPerStudy).toEqual([1, 1]);
  expect(r.ledgerRowsPerStudy).toEqual([1, 1]);
  expect(r.auditVerify.ok).toBe(true);
}

describe(`crash trials (${BACKEND})`, () => {
  const cases: [string, KillTrigger, number][] = [
    ['a random moment', KillTrigger.Delay, 3],
    ['an instance commit inside a multi-part request', KillTrigger.InstanceStored, 3],
    ['inference (after the job claim)', KillTrigger.JobClaimed, 2],
    ['the SR file appearing at the destination, before its ledger row', KillTrigger.SrFileWritten, 2],
  ];
  it.each(cases)(
    '[REQ-REL-01] kill -9 at %s, restart: nothing acknowledged lost, one SR per study',
    async (_what, trigger, perStudy) => {
      const r = await runCrashTrial({
        backend: BACKEND,
        trigger,
        random,
        studies: 2,
        instancesPerStudy: perStudy,
        maxKillDelayMs: 8000,
      });
      expectClean(r);
      if (trigger === KillTrigger.SrFileWritten) expect(r.phase).toBe('export');
      if (trigger === KillTrigger.InstanceStored) expect(r.phase).toBe('ingest');
    },
    150_000,
  );

  it('[REQ-REL-01] kill -9 after the PACS stored the SR, before the gateway read the answer: one SR, exported', async () => {
    const r = await runCrashTrial({
      backend: BACKEND,
      trigger: KillTrigger.SrStoredAtPacs,
      destination: 'stow-rs',
      random,
      studies: 2,
    });
    expectClean(r);
    expect(r.phase).toBe('export');
    // The retry re-sends the bytes staged before the first send (the export outbox, migration 0017),
    // not a re-built SR with a new Content Time: the PACS sees an identical resend and stores it
    // once without a refusal (before the outbox, it refused a changed copy with 0x0111).
    expect(r.pacsRefused).toBe(0);
    if (r.atKill) expect(r.atKill.srFiles).toBeGreaterThan(r.atKill.ledgerRows);
  }, 150_000);

  it('[REQ-REL-01] the embedded database (PGlite) survives a kill during export too', async () => {
    const r = await runCrashTrial({ backend: 'pglite', trigger: KillTrigger.SrFileWritten, random, studies: 2 });
    expectClean(r);
  }, 150_000);
});
