import type { Queryable } from './db/pool.js';

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
}

/** Label values escaped per the exposition format: backslash, double quote and line feed. */
function label(v: string): string {
  return v.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n');
}

export const METRICS_QUERIES = {
  jobs: `SELECT state AS key, count(*)::int AS n FROM jobs GROUP BY state`,
  studies: `SELECT state AS key, count(*)::int AS n FROM studies GROUP BY state`,
  instances: `SELECT received_via AS key, count(*)::int AS n FROM instances GROUP BY received_via`,
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
  gauge('radscribe_uptime_seconds', 'Seconds since the gateway started.', [
    [{}, Math.round((Date.now() - src.startedAt.getTime()) / 1000)],
  ]);
  return `${lines.join('\n')}\n`;
}
