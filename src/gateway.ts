import { mkdirSync } from 'node:fs';
import path from 'node:path';
import { createApp } from './app.js';
import { AuditEventKind } from './audit/audit-codes.js';
import { recordAudit } from './audit/audit-log.js';
import { AuditRecorder } from './audit/audit-recorder.js';
import { createAuditRouter } from './audit/audit-router.js';
import { auditConfigurationChange } from './audit/config-change-audit.js';
import { AeConfigStore } from './config/ae-store.js';
import { dimsePollerSettings, qrPeerOf } from './config/dimse-qr.js';
import {
  databaseOptions,
  dicomLimitsOf,
  diskGuardOptions,
  imagePrepOptions,
  qidoPollerOptions,
  stowLimits,
} from './config/options.js';
import type { RadScribeConfig } from './config.js';
import { migrate } from './db/migrate.js';
import { type Database, openDatabase } from './db/pool.js';
import { ListenerRegistry } from './dimse/listener-registry.js';
import { StorageScp } from './dimse/storage-scp.js';
import { ErrorCode, errorCodeOf, normalizeErrorString, RadScribeError } from './errors.js';
import { createAdminRouter } from './http/admin/admin-router.js';
import { createRulesRouter, rulesRouterDeps } from './http/admin/rules-router.js';
import { AccessControl, auditRequester } from './http/auth/access-control.js';
import { oidcVerifier } from './http/auth/oidc.js';
import { createTokenRouter } from './http/auth/token-router.js';
import { AuthFailureThrottle, ConcurrencyGate, RateLimiter } from './http/limits.js';
import { InferenceClient } from './inference/inference-client.js';
import type { ModelIdentity } from './inference/model-identity.js';
import { DiskGuard } from './ingest/disk-guard.js';
import { backfillInstanceHeaders } from './ingest/header-backfill.js';
import { InstanceStore } from './ingest/instance-store.js';
import { sweepOrphanInstanceFiles } from './ingest/orphan-sweep.js';
import { PgRemoteStudyTracker } from './ingest/remote-study-tracker.js';
import { createJobsRouter } from './jobs/jobs-router.js';
import type { JobWorker } from './jobs/worker.js';
import { childLogger } from './logger.js';
import { renderMetrics } from './metrics.js';
import type { DicomwebClient } from './pacs/dicomweb-client.js';
import { DimsePoller } from './pacs/dimse-poller.js';
import { PgQidoPollState } from './pacs/qido-poll-state.js';
import { QidoPoller } from './pacs/qido-poller.js';
import { createStowRouter } from './pacs/stow-router.js';
import { removeStaleSpoolFiles } from './pacs/temp-spool.js';
import { createWadoRouter } from './pacs/wado-router.js';
import { ImagePrepClient } from './pipeline/image-prep-client.js';
import type { Environment } from './secrets.js';
import { auditAnchorService } from './services/audit-anchor-service.js';
import { auditExportService } from './services/audit-export-service.js';
import { auditRetentionService } from './services/audit-retention-service.js';
import { describeStudyWorker } from './services/describe-study-worker.js';
import { heldStudyView } from './services/held-study-view.js';
import { HttpService } from './services/http-service.js';
import { LocalAeService } from './services/local-ae-service.js';
import { qidoPollerAuditHooks } from './services/qido-poller-audit.js';
import { type RemoteWiring, remoteWiring } from './services/remote-wiring.js';
import { retentionService } from './services/retention-service.js';
import { closeInReverse, Resource, type Service, startInOrder, task } from './services/service.js';

/** Swept orphan SOP Instance UIDs named in the log and the audit event; the count is always whole. */
const MAX_SWEPT_UIDS_RECORDED = 100;

export interface GatewayOptions {
  /** Who started the gateway, for the application-start/stop and config-change audit events. */
  readonly actor?: string;
  /** Where secrets named by the configuration are read (default process.env). */
  readonly env?: Environment;
}

/**
 * The running gateway, and only its composition: an ordered list of services, started in order and
 * closed in reverse, also when a later start fails (STYLE rule 11: every resource has one owner).
 * The work itself lives in the services' modules; the CLI is the composition root above this.
 */
export class Gateway {
  readonly config: RadScribeConfig;
  private readonly log = childLogger('gateway');
  private readonly services: readonly Service[];
  private readonly database: Resource<Database>;
  private readonly inference: Resource<InferenceClient>;
  private readonly jobWorker: Resource<JobWorker>;
  private readonly http: HttpService;
  private readonly dimse: Resource<LocalAeService>;
  private readonly actor: string;
  private stopActor: string;
  private starting: Promise<this> | undefined;
  private stopping: Promise<void> | undefined;

  /** Composes the services; nothing runs until start(). */
  constructor(config: RadScribeConfig, opts: GatewayOptions = {}) {
    this.config = config;
    this.actor = opts.actor ?? 'radscribe';
    this.stopActor = this.actor;
    const startedAt = new Date();
    const env = opts.env ?? process.env;

    // Configuration that resolves without I/O beyond the environment and the fonts: fails first.
    const remote = new Resource<RemoteWiring>('remote-nodes', async () => remoteWiring(config, env));
    const database = new Resource<Database>(
      'database',
      async () => {
        mkdirSync(config.dataDir, { recursive: true });
        const db = await openDatabase(databaseOptions(config));
        try {
          const { applied } = await migrate(db.pool);
          this.log.info('database ready', { database: db.describe(), migrationsApplied: applied.length });
          return db;
        } catch (err: unknown) {
          await db.close();
          throw err;
        }
      },
      (db) => db.close(),
    );
    const configAudit = task('configuration-audit', async () => {
      await auditConfigurationChange(database.value.pool, config, this.actor);
    });
    // The file's local AEs and remote nodes into their tables (ae-store.ts: which of file and API wins).
    const aeConfig = new Resource<AeConfigStore>('ae-config', async () => {
      const store = new AeConfigStore(database.value.pool);
      const { changed, shadowed } = await store.syncFromConfig(config, this.actor);
      if (changed > 0) this.log.info('local AEs and remote nodes updated from the configuration file', { changed });
      if (shadowed.length > 0)
        this.log.warn('configuration file entries shadowed by changes made through the admin API', { shadowed });
      return store;
    });
    // The AE titles of the per-AE DICOMweb paths: those of the running listeners, kept current.
    const localAeTitles: string[] = config.dimse.listeners.map((l) => l.aeTitle);
    const inference = new Resource<InferenceClient>(
      'inference',
      async () => {
        const model = await InferenceClient.start({
          bundleDir: config.model.bundle,
          executionProviders: config.model.executionProviders,
          intraOpNumThreads: config.model.intraOpNumThreads,
        });
        if (config.model.strict && model.provider !== config.model.executionProviders[0]) {
          await model.close();
          throw new RadScribeError(
            ErrorCode.ConfigInvalid,
            `model.strict: execution provider ${config.model.executionProviders[0]} requested but ${model.provider} is in use`,
          );
        }
        const id = model.identity;
        this.log.info('model ready', {
          model: id.name,
          version: id.version,
          provider: id.provider,
          fixture: id.fixture,
        });
        return model;
      },
      (model) => model.close(),
    );
    const images = new Resource<ImagePrepClient>(
      'image-prep',
      async () => new ImagePrepClient(imagePrepOptions(config)),
      (c) => c.close(),
    );
    const ingest = new Resource('ingest', async () => {
      const tmpDir = path.join(config.dataDir, 'tmp');
      mkdirSync(tmpDir, { recursive: true });
      const stale = await removeStaleSpoolFiles(tmpDir);
      if (stale) this.log.warn('removed spool files of an earlier run', { files: stale });
      const pool = database.value.pool;
      // Rows stored before migration 0004 get their header columns before any job reads them.
      await backfillInstanceHeaders(pool);
      const storageDir = path.join(config.dataDir, 'instances');
      mkdirSync(storageDir, { recursive: true });
      const orphans = await sweepOrphanInstanceFiles(pool, storageDir);
      if (orphans.removed.length > 0)
        this.log.warn('removed instance files without a row, left by a crashed run', {
          files: orphans.removed.length,
          sopInstanceUids: orphans.removed.slice(0, MAX_SWEPT_UIDS_RECORDED),
        });
      const guard = new DiskGuard({ dir: storageDir, ...diskGuardOptions(config) });
      return {
        tmpDir,
        guard,
        sink: new InstanceStore({ pool, storageDir, guard, limits: dicomLimitsOf(config) }),
        // Recorded with application-start (issue 15: "sweep … at start, and audit what was swept").
        sweptSpoolFiles: stale,
        sweptOrphanInstances: orphans.removed,
      };
    });
    // Recorded on close only if application-start was: a failed start is not a stop (PS3.15 A.5.3.1).
    let applicationStarted = false;
    const stopAudit = task(
      'application-stop-audit',
      async () => undefined,
      async () => {
        if (!applicationStarted) return;
        try {
          await recordAudit(database.value.pool, { kind: AuditEventKind.ApplicationStop, actor: this.stopActor });
        } catch (err: unknown) {
          this.log.warn('could not record application stop', { error: normalizeErrorString(err) });
        }
      },
    );
    // Closed right after stopAudit (reverse order), so the shutdown anchor covers application-stop.
    const anchor = auditAnchorService(config, database);
    // Across restarts of the listener (one per gateway): a caller's rate and the uploads in flight.
    const rateLimiter = new RateLimiter(config.http.limits.requestsPerMinute);
    const uploadGate = new ConcurrencyGate(config.http.limits.maxConcurrentUploads);
    const authFailures = new AuthFailureThrottle(config.http.limits.authFailuresPerMinute);
    // Before the anchor and application-stop in the list, so closed after them: the stop goes out.
    const auditExport = auditExportService(config, database);
    const http = new HttpService(
      () => {
        const db = database.value;
        const { sink, tmpDir } = ingest.value;
        const access = new AccessControl({
          pool: db.pool,
          metricsPublic: config.http.metricsPublic,
          authFailures,
          ...(config.http.oidc.issuer ? { jwt: oidcVerifier(config.http.oidc) } : {}),
        });
        // The DIMSE listeners' AE titles are also DICOMweb services at /dicomweb/aets/{AET} (issue 11).
        return createApp({
          dicomweb: [
            createStowRouter({
              sink,
              tmpDir,
              refusals: new AuditRecorder(db.pool),
              limits: stowLimits(config),
              localAeTitles,
              ...(config.http.publicBaseUrl ? { retrieveUrlBase: config.http.publicBaseUrl } : {}),
            }),
            createWadoRouter({ pool: db.pool, localAeTitles }),
          ],
          api: [
            createAuditRouter({ pool: db.pool, requester: auditRequester }),
            createJobsRouter({ pool: db.pool }),
            createTokenRouter({ pool: db.pool }),
            createRulesRouter(rulesRouterDeps(config, db.pool, tmpDir)),
            createAdminRouter({
              store: aeConfig.value,
              config,
              applyLocalAes: async () => (dimse.started ? dimse.value.refresh() : undefined),
            }),
          ],
          authorize: (req) => access.authorize(req),
          limits: { rate: rateLimiter, uploads: uploadGate },
          health: () => this.health(),
          metrics: () =>
            renderMetrics({
              db: db.pool,
              model: inference.value.identity,
              inferenceRestarts: () => inference.value.restarts,
              startedAt,
              storage: () => ingest.value.guard.check(),
            }),
        });
      },
      config.http.host,
      config.http.port,
      config.http.requestTimeoutMs,
      config.http.tls.certFile ? config.http.tls : undefined,
    );
    // DIMSE receiving (C-ECHO / C-STORE SCP), one listener per local AE title of the local_aes
    // table (seeded from dimse.listeners, changed live through /api/v1/local-aes), into the same
    // InstanceStore as STOW-RS. No local AEs: nothing listens.
    const dimse = new Resource<LocalAeService>(
      'dimse',
      async () => {
        const { sink, tmpDir } = ingest.value;
        const pool = database.value.pool;
        const registry = new ListenerRegistry({
          create: (listener) =>
            new StorageScp({
              listener,
              sink,
              tmpDir,
              pool,
              refusals: new AuditRecorder(pool),
              maxPduLength: config.dimse.maxPduLength,
              maxInstanceBytes: config.ingest.maxPartBytes,
              maxAssociations: config.dimse.maxAssociations,
              timeouts: { artimMs: config.dimse.artimMs, idleMs: config.dimse.idleMs },
            }),
        });
        const service = new LocalAeService({
          store: aeConfig.value,
          registry,
          onLocalAes: (ls) => localAeTitles.splice(0, localAeTitles.length, ...ls.map((l) => l.aeTitle)),
        });
        try {
          await service.start();
        } catch (err: unknown) {
          await service.close();
          throw err;
        }
        return service;
      },
      (s) => s.close(),
    );
    this.dimse = dimse;
    const jobWorker = new Resource<JobWorker>(
      'job-worker',
      async () => {
        const worker = describeStudyWorker(config, database.value, inference.value, images.value, remote.value);
        worker.start();
        return worker;
      },
      (w) => w.stop(),
    );
    const pollers = config.remoteNodes
      .filter((n) => n.poll.enabled)
      .map(
        (n) =>
          new Resource<QidoPoller>(
            `qido-poller:${n.name}`,
            async () => {
              const pool = database.value.pool;
              const poller = new QidoPoller({
                node: { name: n.name, client: remote.value.clients.get(n.name) as DicomwebClient, query: n.poll.query },
                sink: ingest.value.sink,
                tracker: new PgRemoteStudyTracker(pool),
                state: new PgQidoPollState(pool),
                held: heldStudyView(pool),
                tmpDir: ingest.value.tmpDir,
                ...qidoPollerOptions(n),
                ...qidoPollerAuditHooks(pool, this.actor),
              });
              poller.start();
              return poller;
            },
            (p) => p.stop(),
          ),
      );
    // C-FIND/C-MOVE pollers (issue 11): after the DIMSE listeners, which receive what they move.
    const dimsePollers = config.remoteNodes.flatMap((n) =>
      n.dimse?.qr.enabled && n.dimse.moveDestination
        ? [
            new Resource<DimsePoller>(
              `dimse-poller:${n.name}`,
              async () => {
                const d = n.dimse as NonNullable<typeof n.dimse>;
                const pool = database.value.pool;
                const poller = new DimsePoller({
                  node: { name: n.name, peer: qrPeerOf(d), moveDestination: d.moveDestination as string },
                  sink: ingest.value.sink,
                  tracker: new PgRemoteStudyTracker(pool),
                  held: heldStudyView(pool),
                  ...dimsePollerSettings(d),
                  ...qidoPollerAuditHooks(pool, this.actor),
                });
                poller.start();
                return poller;
              },
              (p) => p.stop(),
            ),
          ]
        : [],
    );
    // Last: application-start means everything above is running (issue 8).
    const startAudit = task('application-start-audit', async () => {
      const id = inference.value.identity;
      await recordAudit(database.value.pool, {
        kind: AuditEventKind.ApplicationStart,
        actor: this.actor,
        detail: {
          model: id.name,
          modelVersion: id.version,
          provider: id.provider,
          // Upload spool files of an earlier run that died mid-request: never acknowledged, removed.
          ...(ingest.value.sweptSpoolFiles > 0 ? { sweptSpoolFiles: ingest.value.sweptSpoolFiles } : {}),
          // Instance files a crashed run renamed into place whose row never committed (orphan-sweep.ts).
          ...(ingest.value.sweptOrphanInstances.length > 0
            ? {
                sweptOrphanInstances: ingest.value.sweptOrphanInstances.length,
                sweptOrphanInstanceUids: ingest.value.sweptOrphanInstances.slice(0, MAX_SWEPT_UIDS_RECORDED),
              }
            : {}),
        },
      });
      applicationStarted = true;
    });

    // Audit retention (issue 12), when audit.retention.periodDays is set; closed before the anchor.
    const auditRetention = auditRetentionService(config, database, this.actor);

    this.database = database;
    this.inference = inference;
    this.jobWorker = jobWorker;
    this.http = http;
    this.services = [
      remote,
      database,
      configAudit,
      aeConfig,
      inference,
      images,
      ingest,
      ...(auditExport ? [auditExport] : []),
      ...(anchor ? [anchor] : []),
      stopAudit,
      http,
      dimse,
      jobWorker,
      ...pollers,
      ...dimsePollers,
      retentionService(config, database, this.actor),
      ...(auditRetention ? [auditRetention] : []),
      startAudit,
    ];
  }

  /** Composes and starts a gateway; rejects (with everything closed again) if any service fails. */
  static async start(config: RadScribeConfig, opts: GatewayOptions = {}): Promise<Gateway> {
    return new Gateway(config, opts).start();
  }

  /**
   * Starts the services in order; on failure closes the started ones in reverse and rejects. Once:
   * a second call returns the first call's outcome (a failed gateway is not restarted piecemeal).
   */
  start(): Promise<this> {
    this.starting ??= (async () => {
      await startInOrder(this.services, this.log);
      this.log.info('gateway started', {
        url: this.baseUrl,
        services: this.services.map((s) => s.name),
        remoteNodes: this.config.remoteNodes.length,
      });
      return this;
    })();
    return this.starting;
  }

  /** Base URL of the running HTTP server (e.g. http://127.0.0.1:8080). */
  get baseUrl(): string {
    return this.http.baseUrl;
  }
  /** The running DIMSE listeners (AE title → port actually bound; port 0 in config = any free port). */
  get dimseListeners(): { aeTitle: string; port: number }[] {
    return this.dimse.value.registry.listeners.map((l) => ({ aeTitle: l.aeTitle, port: l.port }));
  }
  /** The running local AEs (live: follows changes made through the admin API). */
  get localAes(): LocalAeService {
    return this.dimse.value;
  }
  get db(): Database {
    return this.database.value;
  }
  get model(): InferenceClient {
    return this.inference.value;
  }
  /** The model in use as the SR names it (reported by the inference side). */
  get modelInfo(): ModelIdentity {
    return this.inference.value.identity;
  }
  get worker(): JobWorker {
    return this.jobWorker.value;
  }

  async health(): Promise<{ ok: boolean; body: Record<string, unknown> }> {
    let database = 'ok';
    try {
      await this.db.pool.query('SELECT 1');
    } catch (err: unknown) {
      // Health is for operators' monitoring on the same network: the code, not the driver's text.
      database = `unavailable (${errorCodeOf(err)})`;
    }
    const id = this.modelInfo;
    return {
      ok: database === 'ok' && !this.stopping,
      body: {
        status: database === 'ok' ? 'ok' : 'degraded',
        database,
        databaseBackend: this.db.embedded ? 'embedded-pglite' : 'postgresql',
        model: { name: id.name, version: id.version, provider: id.provider, fixture: id.fixture },
      },
    };
  }

  /** Closes every service in reverse start order (pollers and worker drain first). Idempotent. */
  stop(actor = this.actor): Promise<void> {
    this.stopActor = actor;
    this.stopping ??= closeInReverse(this.services, this.log);
    return this.stopping;
  }
}
