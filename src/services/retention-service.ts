import path from 'node:path';
import { retentionOptions } from '../config/options.js';
import type { RadScribeConfig } from '../config.js';
import type { Database } from '../db/pool.js';
import { RetentionSweeper } from '../ingest/retention.js';
import { Resource } from './service.js';

/**
 * The gateway's periodic retention pass (issue 9): removes received instances of exported studies
 * per `retention.rules`, every `retention.intervalMs`. With no rules it starts nothing. Closing waits
 * for a pass in flight, whose deletion transaction then commits or rolls back as a whole.
 */
export function retentionService(
  config: RadScribeConfig,
  database: Resource<Database>,
  /** The gateway's audit actor, as for its other automatic work (polls, retrieves). */
  actor: string,
): Resource<RetentionSweeper> {
  return new Resource<RetentionSweeper>(
    'retention',
    async () => {
      const sweeper = new RetentionSweeper({
        pool: database.value.pool,
        storageDir: path.join(config.dataDir, 'instances'),
        actor,
        ...retentionOptions(config),
      });
      sweeper.start();
      return sweeper;
    },
    (s) => s.stop(),
  );
}
