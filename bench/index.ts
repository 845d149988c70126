import { readdirSync } from 'node:fs';
import path from 'node:path';

/**
 * `npm run bench`: runs every bench/*.bench.js (compiled from bench/*.bench.ts) in turn, or only
 * those whose name contains one of the arguments (`npm run bench -- decode`). Each benchmark
 * measures RadScribe against a named peer side by side in the same run and prints ratios; none of
 * this belongs in timed tests. A benchmark module exports `run(): Promise<void>`.
 */
async function main(): Promise<void> {
  // `--name value` options belong to the benchmarks (e.g. `inference --ep cuda --bundle <dir>`), not filters.
  const args = process.argv.slice(2);
  const filters = args.filter((a, i) => !a.startsWith('--') && !args[i - 1]?.startsWith('--'));
  const files = readdirSync(__dirname)
    .filter((f) => f.endsWith('.bench.js'))
    .filter((f) => filters.length === 0 || filters.some((x) => f.includes(x)))
    .sort();
  if (files.length === 0) throw new Error(`no benchmark matches ${filters.join(', ') || '(none defined)'}`);
  for (const f of files) {
    process.stdout.write(`\n# ${f.replace(/\.bench\.js$/, '')}\n`);
    const mod = (await import(path.join(__dirname, f))) as { run: () => Promise<void> };
    await mod.run();
  }
}

main().then(
  // The runner owns the process: once every benchmark has printed its figures it exits, so that a
  // handle some benchmark left open (the crash-trials bench kept the process alive after its
  // summary) cannot turn a finished run into a hung one. Benchmarks still close what they open.
  () => process.exit(0),
  (err: unknown) => {
    process.stderr.write(`bench: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exit(1);
  },
);
