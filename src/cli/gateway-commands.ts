import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { listAudit } from '../audit/audit-log.js';
import { jobQueueOptions } from '../config/options.js';
import { DestinationType } from '../config.js';
import { migrate } from '../db/migrate.js';
import { openDatabase } from '../db/pool.js';
import { readSr, renderSrTree } from '../dicom/sr/reader.js';
import { ErrorCode, RadScribeError } from '../errors.js';
import { Gateway } from '../gateway.js';
import { Role } from '../http/auth/roles.js';
import { createTokenAudited, revokeTokenAudited } from '../http/auth/token-admin.js';
import { getStudyState, StudyState } from '../ingest/study-lifecycle.js';
import { JobQueue } from '../jobs/job-queue.js';
import { JobState } from '../jobs/types.js';
import { DicomwebClient } from '../pacs/dicomweb-client.js';
import { PACKAGE_ROOT } from '../runtime-paths.js';
import { type Args, type CliCommand, configFrom, intFlag, operator } from './args.js';

/** Commands that run the gateway itself: serve, demo, migrate (audit: src/cli/audit.ts). */

async function cmdServe(args: Args): Promise<number> {
  const cfg = configFrom(args);
  const gw = await Gateway.start(cfg, { actor: operator() });
  process.stdout.write(`RadScribe listening on ${gw.baseUrl} (STOW-RS: ${gw.baseUrl}/dicomweb/studies)\n`);
  await new Promise<void>((resolve) => {
    const stop = () => resolve();
    process.once('SIGINT', stop);
    process.once('SIGTERM', stop);
  });
  await gw.stop(operator());
  return 0;
}

async function cmdMigrate(args: Args): Promise<number> {
  const cfg = configFrom(args);
  const db = await openDatabase({ url: cfg.database.url || undefined, dataDir: cfg.dataDir, poolSize: 2 });
  try {
    const { applied } = await migrate(db.pool);
    process.stdout.write(applied.length ? `applied ${applied.join(', ')}\n` : 'database is up to date\n');
    return 0;
  } finally {
    await db.close();
  }
}

type AuditRow = Awaited<ReturnType<typeof listAudit>>[number];
export function formatAuditTable(events: readonly AuditRow[]): string {
  const lines = events.map((e) => {
    const r = e as unknown as Record<string, unknown>;
    const at = r.occurredAt instanceof Date ? r.occurredAt.toISOString() : String(r.occurredAt ?? '');
    const who = [r.actor, r.source && `from ${String(r.source)}`, r.destination && `to ${String(r.destination)}`]
      .filter(Boolean)
      .join(' ');
    const study = r.studyInstanceUid ? ` study=${String(r.studyInstanceUid)}` : '';
    return `${String(r.id).padStart(6)}  ${at}  ${String(r.kind).padEnd(18)} DCM ${String(r.eventId ?? '')} outcome=${String(r.outcome ?? '')}  ${who}${study}`;
  });
  return `${lines.join('\n')}\n`;
}

/**
 * The main job on embedded defaults: start the gateway, push the bundled sample study to its own
 * STOW-RS endpoint as a modality would, wait for the draft SR, print its content tree and the audit
 * events, leave the SR in the outbox folder.
 */
async function cmdDemo(args: Args): Promise<number> {
  // The demo keeps its own data directory (var/demo) unless RADSCRIBE_DATA_DIR names another.
  const demoDir = path.resolve(process.env.RADSCRIBE_DATA_DIR ?? path.join(PACKAGE_ROOT, 'var', 'demo'));
  const cfg = configFrom(args, {
    overrides: {
      dataDir: demoDir,
      http: { host: '127.0.0.1', port: 0 },
      ingest: { stabilityWindowMs: 1000 },
      jobs: { pollIntervalMs: 200 },
      destinations: [{ name: 'outbox', type: DestinationType.Folder, path: path.join(demoDir, 'outbox') }],
      defaultDestination: 'outbox',
      routes: [],
      remoteNodes: [],
    },
  });
  const timeoutMs = intFlag(args, 'timeout-ms', 300_000);
  const out = (s: string) => process.stdout.write(`${s}\n`);
  const started = Date.now();
  const gw = await Gateway.start(cfg, { actor: 'demo' });
  try {
    out(`RadScribe demo — gateway at ${gw.baseUrl}, database: ${gw.db.describe()}`);
    out(
      `model: ${gw.modelInfo.name} ${gw.modelInfo.version} on ${gw.modelInfo.provider}${gw.modelInfo.fixture ? ` — ${gw.modelInfo.label ?? 'TEST FIXTURE'}` : ''}`,
    );
    const sampleDir = path.join(PACKAGE_ROOT, 'test', 'fixtures', 'sample-study');
    const files = readdirSync(sampleDir)
      .filter((f) => f.endsWith('.dcm'))
      .map((f) => path.join(sampleDir, f));
    // The gateway asks every caller for a token (README "Access"): the demo is its own modality,
    // with an ingest token that lives an hour and is revoked when the demo ends.
    const ingest = await createTokenAudited(
      gw.db.pool,
      { name: 'demo modality', role: Role.Ingest, expiresAt: new Date(Date.now() + 3_600_000) },
      { actor: 'demo', via: 'demo' },
    );
    const client = new DicomwebClient({
      baseUrl: `${gw.baseUrl}/dicomweb`,
      timeoutMs: 60_000,
      auth: { type: 'bearer', token: ingest.secret },
    });
    const stow = await client
      .storeInstances(undefined, files)
      .finally(() => revokeTokenAudited(gw.db.pool, ingest.token.id, { actor: 'demo', via: 'demo' }));
    out(
      `STOW-RS ${files.length} instance(s) → HTTP ${stow.httpStatus}: ${stow.referenced.length} stored, ${stow.failed.length} failed`,
    );
    const study =
      stow.referenced[0]?.retrieveUrl?.match(/studies\/([0-9.]+)/)?.[1] ??
      (await studyOf(gw, stow.referenced[0]?.sopInstanceUid));
    if (!study) throw new RadScribeError(ErrorCode.Internal, 'sample study was not stored');
    await ensureJob(gw, study);
    const job = await waitForJob(gw, study, timeoutMs);
    if (job.state !== JobState.Succeeded) {
      out(`describe-study job ${job.id} ended ${job.state}: ${job.errorCode ?? ''} ${job.lastError ?? ''}`);
      return 1;
    }
    const result = job.result as { srSopInstanceUid: string; location: string; described: number; selected: number };
    out(
      `\nDraft SR ${result.srSopInstanceUid} (${result.described}/${result.selected} image(s) described) — content tree:\n`,
    );
    out(renderSrTree(readSr(readFileSync(result.location))));
    out('\nAudit events for this study:');
    const events = await listAudit(gw.db.pool, { studyInstanceUid: study, limit: 100 }, 'demo');
    process.stdout.write(formatAuditTable([...events].reverse()));
    out(`\nSR file: ${result.location}`);
    out(`demo finished in ${((Date.now() - started) / 1000).toFixed(1)} s`);
    return 0;
  } finally {
    await gw.stop('demo');
  }
}

async function studyOf(gw: Gateway, sop: string | undefined): Promise<string | undefined> {
  if (!sop) return undefined;
  const r = await gw.db.pool.query<{ study_instance_uid: string }>(
    'SELECT study_instance_uid FROM instances WHERE sop_instance_uid = $1',
    [sop],
  );
  return r.rows[0]?.study_instance_uid;
}

/**
 * A re-run of the demo on the same database re-sends identical instances, which are duplicates and
 * do not reopen the study; ask for a manual describe-study job then (the SR UID will be the same).
 */
async function ensureJob(gw: Gateway, study: string): Promise<void> {
  const state = await getStudyState(gw.db.pool, study);
  if (state === StudyState.Exported || state === StudyState.Failed) {
    await new JobQueue(gw.db.pool, jobQueueOptions(gw.config)).enqueue(gw.db.pool, {
      kind: 'describe-study',
      studyInstanceUid: study,
      payload: { trigger: 'manual' },
    });
  }
}

async function waitForJob(gw: Gateway, study: string, timeoutMs: number) {
  const q = new JobQueue(gw.db.pool);
  const deadline = Date.now() + timeoutMs;
  const since = new Date(Date.now() - 1000);
  for (;;) {
    const jobs = await q.list({ studyInstanceUid: study });
    const recent = jobs.filter(
      (j) => j.createdAt >= since || j.state === JobState.Queued || j.state === JobState.Running,
    );
    const done = recent.find(
      (j) => j.state === JobState.Succeeded || j.state === JobState.Failed || j.state === JobState.Cancelled,
    );
    if (done && !recent.some((j) => j.state === JobState.Queued || j.state === JobState.Running)) return done;
    if (Date.now() > deadline)
      throw new RadScribeError(
        ErrorCode.Timeout,
        `no finished describe-study job for the sample study within ${timeoutMs} ms`,
      );
    await new Promise((r) => setTimeout(r, 250));
  }
}

export const serveCommand: CliCommand = {
  name: 'serve',
  usage: ['serve [--config FILE]   run the gateway (STOW-RS receiver, QIDO pollers, job worker)'],
  run: cmdServe,
};
export const demoCommand: CliCommand = {
  name: 'demo',
  usage: [
    'demo [--config FILE] [--timeout-ms N]   push the bundled sample study through the gateway and print the draft SR',
  ],
  run: cmdDemo,
};
export const migrateCommand: CliCommand = {
  name: 'migrate',
  usage: ['migrate [--config FILE]   apply database migrations and exit'],
  run: cmdMigrate,
};
