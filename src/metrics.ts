import type { Queryable } from './db/pool.js';
import type { DiskCheck } from './ingest/disk-guard.js';

/**
 * Prometheus text exposition (format 0.0.4) for hospital monitoring: the model and execution
 * provider actually in use, queue and study states, exports. Values come from the database, so
 * several gateway processes report the same totals.
 */
export interface MetricsSource {
  readonly db: Queryable;
  readonly model: { name: string; version: string; provider: string; fixture: boolean };
  readonly inferenceRestarts: () => number;
  readonly startedAt: Date;
  /** Free space of the instance store against its limits (issue 9); absent: not reported. */
  readonly storage?: () => Promise<DiskCheck>;
}

/** Label values escaped per the exposition format: backslash, double quote and line feed. */
function label(v: string): string {
  return v.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n');
}

export const METRICS_QUERIES = {
  jobs: `SELECT state AS key, count(*)::int AS n FROM jobs GROUP BY state`,
  studies: `SELECT state AS key, count(*)::int AS n FROM studies GROUP BY state`,
  instances: `SELECT received_via AS key, count(*)::int AS n FROM instances WHERE deleted_at IS NULL GROUP BY received_via`,
  /** Instances whose files retention removed (rows kept, migration 0009). */
  expunged: `SELECT received_via AS key, count(*)::int AS n FROM instances WHERE deleted_at IS NOT NULL GROUP BY received_via`,
  exports: `SELECT state || ',' || object_kind AS key, count(*)::int AS n FROM sr_exports GROUP BY state, object_kind`,
} as const;

export async function renderMetrics(src: MetricsSource): Promise<string> {
  const lines: string[] = [];
  const gauge = (name: string, help: string, samples: [Record<string, string>, number][]) => {
    lines.push(`# HELP ${name} ${help}`, `# TYPE ${name} gauge`);
    for (const [labels, value] of samples) {
      const l = Object.entries(labels)
        .map(([k, v]) => `${k}="${label(v)}"`)
        .join(',');
      lines.push(`${name}${l ? `{${l}}` : ''} ${value}`);
    }
  };
  const rows = async (sql: string) => (await src.db.query<{ key: string; n: number }>(sql)).rows;
  const m = src.model;
  gauge('radscribe_model_info', 'Model in use and the execution provider actually loaded (1).', [
    [{ name: m.name, version: m.version, provider: m.provider, fixture: String(m.fixture) }, 1],
  ]);
  gauge('radscribe_inference_restarts', 'Times the inference process was restarted after a hard time limit or crash.', [
    [{}, src.inferenceRestarts()],
  ]);
  gauge(
    'radscribe_jobs',
    'Jobs by state.',
    (await rows(METRICS_QUERIES.jobs)).map((r) => [{ state: r.key }, r.n]),
  );
  gauge(
    'radscribe_studies',
    'Studies by state.',
    (await rows(METRICS_QUERIES.studies)).map((r) => [{ state: r.key }, r.n]),
  );
  gauge(
    'radscribe_instances',
    'Stored instances by how they arrived.',
    (await rows(METRICS_QUERIES.instances)).map((r) => [{ via: r.key }, r.n]),
  );
  gauge(
    'radscribe_exports',
    'Exported draft objects by state and kind (sr, pdf).',
    (await rows(METRICS_QUERIES.exports)).map((r) => {
      const [state = '', object = ''] = r.key.split(',');
      return [{ state, object }, r.n];
    }),
  );
  gauge(
    'radscribe_instances_expunged',
    'Instances whose files retention removed, by how they arrived.',
    (await rows(METRICS_QUERIES.expunged)).map((r) => [{ via: r.key }, r.n]),
  );
  // A file system that cannot be measured leaves the storage gauges out rather than failing /metrics.
  const s = await src.storage?.().catch(() => undefined);
  if (s) {
    gauge('radscribe_storage_free_bytes', 'Free bytes on the instance store file system.', [[{}, s.freeBytes]]);
    gauge('radscribe_storage_total_bytes', 'Size of the instance store file system.', [[{}, s.totalBytes]]);
    gauge(
      'radscribe_storage_min_free_bytes',
      'Bytes kept free (max of reserve and watermark); below it ingest answers 507 / 0xA700.',
      [[{}, s.minFreeBytes]],
    );
    gauge('radscribe_storage_accepting', 'Whether the instance store accepts new instances (1) or not (0).', [
      [{}, s.ok ? 1 : 0],
    ]);
  }
  gauge('radscribe_uptime_seconds', 'Seconds since the gateway started.', [
    [{}, Math.round((Date.now() - src.startedAt.getTime()) / 1000)],
  ]);
  return `${lines.join('\n')}\n`;
}
