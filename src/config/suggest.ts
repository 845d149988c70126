/**
 * "Did you mean" for configuration keys (issue 8: a misspelled key is an error that names the key
 * meant). Keys are compared case- and separator-insensitively (`pool_size`, `PoolSize` → `poolSize`),
 * by optimal-string-alignment distance (Damerau–Levenshtein with adjacent transpositions, so
 * `modle` → `model` costs 1), or by a shared stem (`interval` → `intervalMs`, `modalities` → `modality`).
 */

/** Largest edit distance still offered as a suggestion; beyond it a guess is more noise than help. */
export const MAX_SUGGESTION_DISTANCE = 2;
/** Shorter fragments match too many keys by prefix. */
const MIN_PREFIX_LENGTH = 3;

/** A shared stem this long, covering this share of the shorter key, is a plausible inflection. */
const MIN_STEM_LENGTH = 5;
const STEM_SHARE = 0.7;

function commonPrefixLength(a: string, b: string): number {
  let i = 0;
  while (i < a.length && i < b.length && a[i] === b[i]) i++;
  return i;
}

const normalize = (s: string): string => s.replace(/[-_\s]/g, '').toLowerCase();

/** Optimal string alignment distance (insert, delete, substitute, swap two adjacent characters). */
export function editDistance(a: string, b: string): number {
  const rows = a.length + 1;
  const cols = b.length + 1;
  const d: number[][] = Array.from({ length: rows }, (_, i) =>
    Array.from({ length: cols }, (_, j) => (i === 0 ? j : j === 0 ? i : 0)),
  );
  for (let i = 1; i < rows; i++) {
    for (let j = 1; j < cols; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      const row = d[i] as number[];
      const prev = d[i - 1] as number[];
      let best = Math.min((prev[j] as number) + 1, (row[j - 1] as number) + 1, (prev[j - 1] as number) + cost);
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1])
        best = Math.min(best, ((d[i - 2] as number[])[j - 2] as number) + 1);
      row[j] = best;
    }
  }
  return (d[a.length] as number[])[b.length] as number;
}

/** The known key closest to `key`, or undefined when none is close enough to be a plausible typo. */
export function closestKey(key: string, known: Iterable<string>): string | undefined {
  const k = normalize(key);
  let best: { key: string; score: number } | undefined;
  for (const candidate of known) {
    const c = normalize(candidate);
    if (c === k) return candidate;
    let score = editDistance(k, c);
    // A prefix either way (`interval` for `intervalMs`, `poolSizes` for `poolSize`), or a long shared
    // stem (`modalities` for `modality`), counts as close.
    if (score > MAX_SUGGESTION_DISTANCE && Math.min(k.length, c.length) >= MIN_PREFIX_LENGTH) {
      const shared = commonPrefixLength(k, c);
      const shorter = Math.min(k.length, c.length);
      if (shared === shorter || (shared >= MIN_STEM_LENGTH && shared >= STEM_SHARE * shorter))
        score = MAX_SUGGESTION_DISTANCE;
    }
    if (score <= MAX_SUGGESTION_DISTANCE && score < Math.max(k.length, 2) && (!best || score < best.score))
      best = { key: candidate, score };
  }
  return best?.key;
}

/** ` (did you mean "model"?)` or the empty string. */
export function didYouMean(key: string, known: Iterable<string>): string {
  const s = closestKey(key, known);
  return s === undefined ? '' : ` (did you mean "${s}"?)`;
}
