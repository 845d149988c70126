import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import express from 'express';
import { createApp } from './app.js';
import { type AuditEventKind as AuditKind, EventOutcome, AuditEventKind as Kinds } from './audit/audit-codes.js';
import { listAudit, recordAudit } from './audit/audit-log.js';
import { type RadScribeConfig, redactedConfig } from './config.js';
import { migrate } from './db/migrate.js';
import { type Database, openDatabase, withTransaction } from './db/pool.js';
import { loadPdfFonts, type PdfFont } from './dicom/pdf/fonts.js';
import { modelDeviceUid } from './dicom/sr/document.js';
import { ErrorCode, normalizeErrorString, RadScribeError } from './errors.js';
import { FolderDestination, type SrDestination, StowRsDestination } from './export/sr-destination.js';
import { SrExportLedger } from './export/sr-export-ledger.js';
import { InferenceClient } from './inference/inference-client.js';
import { InstanceStore } from './ingest/instance-store.js';
import { PgRemoteStudyTracker } from './ingest/remote-study-tracker.js';
import { StudyRepository } from './ingest/study-repository.js';
import { JobWorker } from './jobs/worker.js';
import { childLogger } from './logger.js';
import { renderMetrics } from './metrics.js';
import { DicomwebClient } from './pacs/dicomweb-client.js';
import { QidoPoller } from './pacs/qido-poller.js';
import { createStowRouter } from './pacs/stow-router.js';
import {
  type DraftModel,
  describeStudy,
  type PipelineRecorder,
  type RoutedDestination,
} from './pipeline/describe-study.js';
import { ImagePrepClient } from './pipeline/image-prep-client.js';
import { retrieveTranscoded } from './pipeline/transcode-fallback.js';

/**
 * The running gateway: one owner for every resource (database, HTTP server, model worker, image
 * worker, job worker, pollers), started in dependency order and stopped in reverse. main.ts / the
 * CLI is the composition root; nothing below reads configuration globally.
 */
export class Gateway {
  private readonly log = childLogger('gateway');
  private server: Server | undefined;
  private stopped = false;

  private constructor(
    readonly config: RadScribeConfig,
    readonly db: Database,
    readonly model: InferenceClient,
    private readonly images: ImagePrepClient,
    readonly worker: JobWorker,
    private readonly pollers: QidoPoller[],
    readonly modelInfo: DraftModel['info'],
  ) {}

  /** Base URL of the running HTTP server (e.g. http://127.0.0.1:8080). */
  get baseUrl(): string {
    const a = this.server?.address() as AddressInfo | null | undefined;
    if (!a) throw new RadScribeError(ErrorCode.Internal, 'gateway HTTP server is not listening');
    return `http://${a.family === 'IPv6' ? `[${a.address}]` : a.address}:${a.port}`;
  }

  static async start(config: RadScribeConfig, opts: { actor?: string } = {}): Promise<Gateway> {
    const log = childLogger('gateway');
    const actor = opts.actor ?? 'radscribe';
    const startedAt = new Date();
    mkdirSync(config.dataDir, { recursive: true });
    const db = await openDatabase({
      url: config.database.url || undefined,
      dataDir: config.dataDir,
      poolSize: config.database.poolSize,
    });
    let model: InferenceClient | undefined;
    let images: ImagePrepClient | undefined;
    try {
      const { applied } = await migrate(db.pool);
      log.info('database ready', { database: db.describe(), migrationsApplied: applied.length });
      await auditConfiguration(db, config, actor);

      model = await InferenceClient.start({
        bundleDir: config.model.bundle,
        executionProviders: config.model.executionProviders,
        intraOpNumThreads: config.model.intraOpNumThreads,
      });
      if (config.model.strict && model.provider !== config.model.executionProviders[0]) {
        throw new RadScribeError(
          ErrorCode.ConfigInvalid,
          `model.strict: execution provider ${config.model.executionProviders[0]} requested but ${model.provider} is in use`,
        );
      }
      const manifest = model.manifest;
      const manifestBytes = readFileSync(path.join(config.model.bundle, 'manifest.json'));
      const info: DraftModel['info'] = {
        name: manifest.name,
        version: manifest.version,
        // PS3.3 C.17.5 Contributing Equipment: a Device UID that changes whenever the model changes.
        deviceUid: modelDeviceUid(manifestBytes, manifest.deviceUid),
        fixture: manifest.fixture,
        ...(manifest.label ? { label: manifest.label } : {}),
        prompt: manifest.prompt,
        provider: model.provider,
      };
      log.info('model ready', {
        model: info.name,
        version: info.version,
        provider: info.provider,
        fixture: info.fixture,
      });
      images = new ImagePrepClient();
      // The bundle's own preprocessor_config.json drives the tiler (Mllama tiles or the plain path).
      const preprocessorConfig = model.preprocessorConfig;

      const clients = new Map(config.remoteNodes.map((n) => [n.name, dicomwebClientFor(n)]));
      const destinations = new Map<string, RoutedDestination>();
      for (const d of config.destinations) {
        let destination: SrDestination | undefined;
        if (d.type === 'folder') destination = new FolderDestination(d.name, d.path);
        else {
          const node = config.remoteNodes.find((n) => n.name === d.node);
          const client = clients.get(d.node);
          if (node && client) destination = new StowRsDestination(d.name, client, node.baseUrl);
        }
        if (destination)
          destinations.set(d.name, { destination, srProfile: d.srProfile, pdfCompanion: d.pdfCompanion });
      }
      // Fonts are read once, and only when a destination wants PDF companions; missing fonts stop
      // start-up with a configuration error rather than failing every job later.
      const pdfFonts: PdfFont[] | undefined = config.destinations.some((d) => d.pdfCompanion)
        ? loadPdfFonts()
        : undefined;

      const recorder = auditRecorder(db);
      const draftModel: DraftModel = {
        info,
        preprocessorConfig,
        describe: (input, o) =>
          (model as InferenceClient).describe(input, {
            maxNewTokens: config.model.maxNewTokens,
            timeoutMs: config.model.timeoutMs,
            ...(o.signal ? { signal: o.signal } : {}),
          }),
      };
      const studies = new StudyRepository(db.pool);
      const worker = new JobWorker({
        pool: db.pool,
        pollIntervalMs: config.jobs.pollIntervalMs,
        leaseMs: config.jobs.leaseMs,
        stabilityWindowMs: config.ingest.stabilityWindowMs,
        handler: (job, signal) =>
          describeStudy(
            {
              listInstances: (uid) => studies.listInstances(uid),
              model: draftModel,
              images: images as ImagePrepClient,
              selection: config.selection,
              routes: config.routes,
              defaultDestination: config.defaultDestination,
              destinations,
              recorder,
              ledger: new SrExportLedger(db.pool),
              transcode: (inst, { studyInstanceUid }) => transcodedCopy(config, clients, inst, studyInstanceUid),
              ...(pdfFonts ? { pdfFonts } : {}),
            },
            job,
            signal,
          ),
      });

      const storageDir = path.join(config.dataDir, 'instances');
      const tmpDir = path.join(config.dataDir, 'tmp');
      mkdirSync(tmpDir, { recursive: true });
      const sink = new InstanceStore({ pool: db.pool, storageDir });
      const tracker = new PgRemoteStudyTracker(db.pool);
      const pollers = config.remoteNodes
        .filter((n) => n.poll.enabled)
        .map(
          (n) =>
            new QidoPoller({
              node: { name: n.name, client: clients.get(n.name) as DicomwebClient, query: n.poll.query },
              sink,
              tracker,
              tmpDir,
              intervalMs: n.poll.intervalMs,
              lookbackDays: n.poll.lookbackDays,
              ...(n.poll.transferSyntax ? { transferSyntax: n.poll.transferSyntax } : {}),
              onQuery: (node, query, count) =>
                audit(db, Kinds.RemoteQuery, { actor, destination: node, detail: { query, results: count } }),
              onRetrieve: (node, studyInstanceUid, counts) =>
                audit(db, Kinds.RemoteRetrieve, { actor, source: node, studyInstanceUid, detail: { ...counts } }),
            }),
        );

      const gw = new Gateway(config, db, model, images, worker, pollers, info);
      const app = createApp({
        dicomweb: createStowRouter({
          sink,
          tmpDir,
          limits: { maxPartBytes: config.ingest.maxPartBytes, maxRequestBytes: config.ingest.maxRequestBytes },
          ...(config.http.publicBaseUrl ? { retrieveUrlBase: config.http.publicBaseUrl } : {}),
        }),
        api: gw.apiRouter(),
        health: () => gw.health(),
        metrics: () =>
          renderMetrics({
            db: db.pool,
            model: info,
            inferenceRestarts: () => (model as InferenceClient).restarts,
            startedAt,
          }),
      });
      await new Promise<void>((resolve, reject) => {
        const s = app.listen(config.http.port, config.http.host, () => resolve());
        s.once('error', reject);
        gw.server = s;
      });
      worker.start();
      for (const p of pollers) p.start();
      await audit(db, Kinds.ApplicationStart, {
        actor,
        detail: { model: info.name, modelVersion: info.version, provider: info.provider },
      });
      log.info('gateway started', { url: gw.baseUrl, remoteNodes: config.remoteNodes.length, pollers: pollers.length });
      return gw;
    } catch (err) {
      await images?.close();
      await model?.close();
      await db.close();
      throw err;
    }
  }

  /** Compliance queries over HTTP; each query is itself audited (110101 Audit Log Used). */
  private apiRouter(): express.Router {
    const r = express.Router();
    r.get('/audit', async (req, res, next) => {
      try {
        const q = req.query;
        const events = await listAudit(
          this.db.pool,
          {
            ...(typeof q.since === 'string' ? { since: new Date(q.since) } : {}),
            ...(typeof q.until === 'string' ? { until: new Date(q.until) } : {}),
            ...(typeof q.kind === 'string' ? { kind: q.kind as AuditKind } : {}),
            ...(typeof q.study === 'string' ? { studyInstanceUid: q.study } : {}),
            limit: Math.min(Number(q.limit ?? 100) || 100, 10_000),
          },
          `http:${req.socket.remoteAddress ?? 'unknown'}`,
        );
        res.json(events);
      } catch (err) {
        next(err);
      }
    });
    return r;
  }

  async health(): Promise<{ ok: boolean; body: Record<string, unknown> }> {
    let database = 'ok';
    try {
      await this.db.pool.query('SELECT 1');
    } catch (err) {
      database = normalizeErrorString(err);
    }
    return {
      ok: database === 'ok' && !this.stopped,
      body: {
        status: database === 'ok' ? 'ok' : 'degraded',
        database,
        databaseBackend: this.db.embedded ? 'embedded-pglite' : 'postgresql',
        model: {
          name: this.modelInfo.name,
          version: this.modelInfo.version,
          provider: this.modelInfo.provider,
          fixture: this.modelInfo.fixture,
        },
      },
    };
  }

  async stop(actor = 'radscribe'): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    for (const p of this.pollers) await p.stop();
    await this.worker.stop();
    await new Promise<void>((resolve) => (this.server ? this.server.close(() => resolve()) : resolve()));
    try {
      await audit(this.db, Kinds.ApplicationStop, { actor });
    } catch (err) {
      this.log.warn('could not record application stop', { error: normalizeErrorString(err) });
    }
    await this.images.close();
    await this.model.close();
    await this.db.close();
  }
}

/**
 * An Explicit VR Little Endian copy of an instance, transcoded by the PACS it was retrieved from,
 * kept under <dataDir>/transcoded (issue #3: fallback for syntaxes no local decoder handles).
 * Only instances that came from a configured remote node by WADO-RS have such a source.
 */
async function transcodedCopy(
  config: RadScribeConfig,
  clients: ReadonlyMap<string, DicomwebClient>,
  inst: { sopInstanceUid: string; seriesInstanceUid: string; receivedVia?: string; actor?: string | null },
  studyInstanceUid: string,
): Promise<string | undefined> {
  const client = inst.receivedVia === 'wado-rs' && inst.actor ? clients.get(inst.actor) : undefined;
  if (!client) return undefined;
  const file = path.join(config.dataDir, 'transcoded', `${inst.sopInstanceUid}.dcm`);
  if (existsSync(file)) return file;
  const { bytes } = await retrieveTranscoded(client, {
    studyInstanceUid,
    seriesInstanceUid: inst.seriesInstanceUid,
    sopInstanceUid: inst.sopInstanceUid,
  });
  mkdirSync(path.dirname(file), { recursive: true });
  writeFileSync(`${file}.tmp`, bytes);
  renameSync(`${file}.tmp`, file);
  return file;
}

function dicomwebClientFor(n: RadScribeConfig['remoteNodes'][number]): DicomwebClient {
  const secret = (name: string | undefined) => (name ? (process.env[name] ?? '') : '');
  const auth =
    n.auth.type === 'basic'
      ? { type: 'basic' as const, username: n.auth.username ?? '', password: secret(n.auth.passwordEnv) }
      : n.auth.type === 'bearer'
        ? { type: 'bearer' as const, token: secret(n.auth.tokenEnv) }
        : undefined;
  return new DicomwebClient({ baseUrl: n.baseUrl, ...(auth ? { auth } : {}), timeoutMs: n.timeoutMs });
}

type AuditFields = Omit<Parameters<typeof recordAudit>[1], 'kind'>;
async function audit(db: Database, kind: AuditKind, fields: AuditFields): Promise<void> {
  await recordAudit(db.pool, { kind, ...fields });
}

/**
 * Configuration changes are audited (PS3.15 A.5.3.x Security Alert / Software Configuration): at every
 * start the hash of the effective configuration (secrets excluded) is compared with the last one.
 */
async function auditConfiguration(db: Database, config: RadScribeConfig, actor: string): Promise<void> {
  const doc = redactedConfig(config);
  const hash = createHash('sha256').update(JSON.stringify(doc)).digest('hex');
  const prev = await db.pool.query<{ detail: { configSha256?: string; sections?: Record<string, string> } }>(
    `SELECT detail FROM audit_events WHERE kind = $1 ORDER BY id DESC LIMIT 1`,
    [Kinds.ConfigChange],
  );
  const last = prev.rows[0]?.detail;
  if (last?.configSha256 === hash) return;
  const sections: Record<string, string> = {};
  for (const [k, v] of Object.entries(doc))
    sections[k] = createHash('sha256').update(JSON.stringify(v)).digest('hex').slice(0, 16);
  const changed = last?.sections
    ? Object.keys(sections).filter((k) => sections[k] !== last.sections?.[k])
    : Object.keys(sections);
  await recordAudit(db.pool, { kind: Kinds.ConfigChange, actor, detail: { configSha256: hash, sections, changed } });
}

function auditRecorder(db: Database): PipelineRecorder {
  return {
    inferenceRun: (ev) =>
      recordAudit(db.pool, {
        kind: Kinds.InferenceRun,
        outcome: ev.outcome === 'success' ? EventOutcome.Success : EventOutcome.SeriousFailure,
        actor: 'radscribe',
        studyInstanceUid: ev.studyInstanceUid,
        sopInstanceUids: [ev.sopInstanceUid],
        detail: { frame: ev.frame, ...ev.detail },
      }).then(() => undefined),
    // The ledger row and its audit event commit together (STYLE §2.6: audit in the same transaction).
    srExported: (ev) =>
      withTransaction(db.pool, async (client) => {
        await new SrExportLedger(client).recordSent(ev.record, ev.location);
        await recordAudit(client, {
          kind: Kinds.SrExported,
          actor: 'radscribe',
          destination: ev.record.destination,
          studyInstanceUid: ev.record.studyInstanceUid,
          sopInstanceUids: [ev.record.sopInstanceUid],
          detail: {
            location: ev.location,
            jobId: ev.record.jobId,
            sopClassUid: ev.record.sopClassUid,
            object: ev.record.objectKind,
            deviceUid: ev.record.deviceUid,
          },
        });
      }),
    srExportFailed: (ev) =>
      withTransaction(db.pool, async (client) => {
        await new SrExportLedger(client).recordFailed(ev.record, ev.code, ev.message);
        await recordAudit(client, {
          kind: Kinds.SrExported,
          outcome: EventOutcome.SeriousFailure,
          actor: 'radscribe',
          destination: ev.record.destination,
          studyInstanceUid: ev.record.studyInstanceUid,
          sopInstanceUids: [ev.record.sopInstanceUid],
          detail: { code: ev.code, jobId: ev.record.jobId, object: ev.record.objectKind },
        });
      }),
  };
}
