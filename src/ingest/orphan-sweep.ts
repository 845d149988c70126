import { readdir, rm, stat } from 'node:fs/promises';
import path from 'node:path';
import type { Queryable } from '../db/pool.js';

/**
 * Orphaned instance files after a crash (issue 15 "Leftovers"): the instance store renames a file
 * into `<study>/<series>/<sop>.dcm` just before its COMMIT; a process killed in between, or a
 * COMMIT whose answer was lost and whose client never retried, leaves a file with no row. Nothing
 * was acknowledged for it (only a committed row is). Swept once at start, before the front ends
 * accept anything.
 *
 * Which files: only those written since the last start of a run that did not stop cleanly (the
 * last application-start has no later application-stop in the audit trail); a clean stop leaves
 * nothing to sweep. Only directories and files modified since then are read, so the cost follows
 * what the crashed run wrote, not the size of the store. A file is removed only when no
 * `instances` row names its SOP Instance UID and it is older than `minAgeMs`, so a file another
 * gateway process renamed a moment ago (its COMMIT in flight) is never touched.
 */

export const DEFAULT_ORPHAN_MIN_AGE_MS = 60_000;
/** Clock difference allowed between the database (audit times) and this host (file times). */
const CLOCK_MARGIN_MS = 5 * 60_000;
const LOOKUP_BATCH = 500;

const LAST_EVENT = `SELECT occurred_at FROM audit_events WHERE kind = $1 ORDER BY occurred_at DESC LIMIT 1`;
const HELD = `SELECT sop_instance_uid FROM instances WHERE sop_instance_uid = ANY($1::text[])`;

/** Start of the crashed run whose writes are to be checked, or undefined after a clean stop. */
export async function crashedRunStart(q: Queryable): Promise<Date | undefined> {
  const at = async (kind: string) =>
    (await q.query<{ occurred_at: Date }>(LAST_EVENT, [kind])).rows[0]?.occurred_at as Date | undefined;
  const started = await at('application-start');
  if (!started) return undefined;
  const stopped = await at('application-stop');
  return stopped && stopped >= started ? undefined : started;
}

async function entries(dir: string): Promise<string[]> {
  try {
    return await readdir(dir);
  } catch {
    return [];
  }
}

async function modifiedSince(p: string, since: number): Promise<{ dir: boolean; mtimeMs: number } | undefined> {
  try {
    const s = await stat(p);
    return s.mtimeMs >= since ? { dir: s.isDirectory(), mtimeMs: s.mtimeMs } : undefined;
  } catch {
    return undefined;
  }
}

export interface OrphanSweepResult {
  readonly checked: number;
  readonly removed: readonly string[];
}

export async function sweepOrphanInstanceFiles(
  q: Queryable,
  storageDir: string,
  opts: { readonly minAgeMs?: number; readonly now?: number } = {},
): Promise<OrphanSweepResult> {
  const start = await crashedRunStart(q);
  if (!start) return { checked: 0, removed: [] };
  const since = start.getTime() - CLOCK_MARGIN_MS;
  const youngest = (opts.now ?? Date.now()) - (opts.minAgeMs ?? DEFAULT_ORPHAN_MIN_AGE_MS);
  const candidates: { sop: string; file: string }[] = [];
  for (const study of await entries(storageDir)) {
    const studyDir = path.join(storageDir, study);
    if (!(await modifiedSince(studyDir, since))?.dir) continue;
    for (const series of await entries(studyDir)) {
      const seriesDir = path.join(studyDir, series);
      if (!(await modifiedSince(seriesDir, since))?.dir) continue;
      for (const name of await entries(seriesDir)) {
        if (!name.endsWith('.dcm')) continue;
        const file = path.join(seriesDir, name);
        const s = await modifiedSince(file, since);
        if (s && !s.dir && s.mtimeMs <= youngest) candidates.push({ sop: name.slice(0, -4), file });
      }
    }
  }
  const removed: string[] = [];
  for (let i = 0; i < candidates.length; i += LOOKUP_BATCH) {
    const batch = candidates.slice(i, i + LOOKUP_BATCH);
    const { rows } = await q.query<{ sop_instance_uid: string }>(HELD, [batch.map((c) => c.sop)]);
    const held = new Set(rows.map((r) => r.sop_instance_uid));
    for (const c of batch) {
      if (held.has(c.sop)) continue;
      await rm(c.file, { force: true });
      removed.push(c.sop);
    }
  }
  return { checked: candidates.length, removed };
}
