import type { Queryable } from '../db/pool.js';
import { errorCodeOf } from '../errors.js';
import { childLogger } from '../logger.js';
import { listUnreadHeaders, recordBackfilledHeader } from './instance-repository.js';
import { readReceivedHeader } from './received-header.js';

/**
 * Instances stored before migration 0004 have no header columns, and frame selection reads rows,
 * not files (issue 8). A migration cannot read files, so the gateway reads each such file's header
 * once at start-up, with the same streaming reader ingest uses, before the job worker runs. A file
 * that cannot be read any more is recorded as having no pixel data (the study's next run skips it)
 * and logged by UID and error code only.
 */
export async function backfillInstanceHeaders(
  q: Queryable,
  opts: { batchSize?: number } = {},
): Promise<{ filled: number; unreadable: number }> {
  const log = childLogger('header-backfill');
  const batchSize = opts.batchSize ?? 500;
  let filled = 0;
  let unreadable = 0;
  for (;;) {
    const batch = await listUnreadHeaders(q, batchSize);
    if (batch.length === 0) break;
    for (const row of batch) {
      try {
        const { header } = await readReceivedHeader(row.filePath);
        await recordBackfilledHeader(q, row.sopInstanceUid, header);
        filled++;
      } catch (err: unknown) {
        await recordBackfilledHeader(q, row.sopInstanceUid, null);
        unreadable++;
        log.warn('stored instance header unreadable during backfill', {
          sopInstanceUid: row.sopInstanceUid,
          code: errorCodeOf(err),
        });
      }
    }
  }
  if (filled + unreadable > 0) log.info('instance headers backfilled', { filled, unreadable });
  return { filled, unreadable };
}
