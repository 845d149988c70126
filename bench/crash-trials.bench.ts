import {
  type CrashTrialResult,
  KillTrigger,
  pickTrigger,
  runCrashTrial,
  seededRandom,
  summarise,
} from '../test/support/crash-trial.js';

/**
 * `npm run bench -- crash` (issue 9): crash trials against the real gateway (`bin/radscribe serve`).
 * Each trial starts the gateway on a fresh database and data directory, uploads a few studies by
 * STOW-RS, kills the process with SIGKILL at a random moment (a uniform delay over start-up,
 * ingest, the stability wait, inference and export, or aimed at an instance commit, a job claim or
 * the SR file appearing at the destination), restarts it on the same database and storage, re-sends
 * what was not acknowledged, and checks: every acknowledged instance stored intact, exactly one SR
 * per study (file and ledger row), `radscribe audit verify` passes, nothing left pending or behind.
 *
 * BENCH_CRASH_TRIALS (default 100) trials per backend; BENCH_CRASH_BACKENDS (default: postgresql
 * when DATABASE_URL is set, and pglite) comma-separated; BENCH_CRASH_SEED (default 9) replays a
 * sequence; BENCH_CRASH_STUDIES / BENCH_CRASH_INSTANCES (2 / 2) size each trial;
 * BENCH_CRASH_DESTINATIONS (default folder,stow-rs): each trial draws one, STOW-RS going to a PACS
 * on loopback that refuses a known SOP Instance UID with other content (0x0111);
 * BENCH_CRASH_MAX_DELAY_MS bounds the uniform delay (default: how long a trial without a kill takes
 * to finish, measured first).
 */
export async function run(): Promise<void> {
  const trials = Number(process.env.BENCH_CRASH_TRIALS ?? 100);
  const seed = Number(process.env.BENCH_CRASH_SEED ?? 9);
  const backends = (process.env.BENCH_CRASH_BACKENDS ?? (process.env.DATABASE_URL ? 'postgresql,pglite' : 'pglite'))
    .split(',')
    .map((b) => b.trim()) as ('postgresql' | 'pglite')[];
  const studies = Number(process.env.BENCH_CRASH_STUDIES ?? 2);
  const destinations = (process.env.BENCH_CRASH_DESTINATIONS ?? 'folder,stow-rs').split(',').map((d) => d.trim()) as (
    | 'folder'
    | 'stow-rs'
  )[];
  const instancesPerStudy = Number(process.env.BENCH_CRASH_INSTANCES ?? 2);
  for (const backend of backends) {
    const random = seededRandom(seed);
    // The uniform delay spans one uninterrupted run on this machine, measured by a trial without a
    // kill (also the baseline: it must pass the same checks).
    const baseline = await runCrashTrial({ backend, studies, instancesPerStudy });
    const maxKillDelayMs = Number(process.env.BENCH_CRASH_MAX_DELAY_MS ?? baseline.firstRunDoneMs ?? 9000);
    process.stdout.write(
      `${backend} baseline (no kill): done after ${baseline.firstRunDoneMs} ms, ${baseline.problems.length ? `PROBLEMS ${baseline.problems.join('; ')}` : 'ok'}; uniform kill delay 0–${maxKillDelayMs} ms\n`,
    );
    const results: CrashTrialResult[] = [];
    for (let i = 0; i < trials; i++) {
      const destination = destinations[Math.floor(random() * destinations.length)] ?? 'folder';
      // The folder's "SR file appeared" moment is, for STOW-RS, "the PACS stored it" (no answer read).
      const picked = pickTrigger(random);
      const trigger =
        destination === 'stow-rs' && picked === KillTrigger.SrFileWritten ? KillTrigger.SrStoredAtPacs : picked;
      const r = await runCrashTrial({
        backend,
        destination,
        trigger,
        random,
        studies,
        instancesPerStudy,
        maxKillDelayMs,
      });
      results.push(r);
      const line = {
        trial: i + 1,
        destination,
        trigger: r.trigger,
        phase: r.phase,
        killAtMs: r.killDelayMs,
        acknowledged: r.acknowledged,
        stored: r.stored,
        srPerStudy: r.srFilesPerStudy,
        ok: r.problems.length === 0,
        ...(r.problems.length ? { problems: r.problems.map((p) => p.slice(0, 600)), kept: r.where } : {}),
      };
      process.stdout.write(`${backend} ${JSON.stringify(line)}\n`);
      // A running total every 10 trials, so a run cut short still reports its counts.
      if ((i + 1) % 10 === 0 && i + 1 < trials) {
        process.stdout.write(`${backend} after ${i + 1} trials: ${JSON.stringify(summarise(results))}\n`);
      }
    }
    const summary = summarise(results);
    process.stdout.write(`\n${backend} summary (seed ${seed}): ${JSON.stringify(summary, null, 2)}\n`);
    if (summary.passed !== trials || baseline.problems.length) process.exitCode = 1;
  }
}
