import path from 'node:path';
import { AuditRecorder } from '../audit/audit-recorder.js';
import { describeCallOptions, jobQueueOptions, jobWorkerOptions } from '../config/options.js';
import type { RadScribeConfig } from '../config.js';
import type { Database } from '../db/pool.js';
import { SrExportLedger } from '../export/sr-export-ledger.js';
import type { InferenceClient } from '../inference/inference-client.js';
import { readHeaderTags } from '../ingest/header-tags.js';
import { InstanceQuarantine } from '../ingest/instance-quarantine.js';
import { InstanceRepository } from '../ingest/instance-repository.js';
import { getStudyVersion } from '../ingest/study-lifecycle.js';
import { JobQueue } from '../jobs/job-queue.js';
import { JobWorker } from '../jobs/worker.js';
import type { DraftModel } from '../pipeline/describe-images.js';
import { describeStudy } from '../pipeline/describe-study.js';
import type { ImagePrepClient } from '../pipeline/image-prep-client.js';
import { retrieveTranscoded } from '../pipeline/transcode-fallback.js';
import { TranscodingCache } from '../pipeline/transcoding-cache.js';
import type { RemoteWiring } from './remote-wiring.js';

/**
 * The describe-study job worker with its pipeline (describe-study.ts) wired to the gateway's
 * started parts: the database, the inference process, the image-prep worker and the remote nodes.
 * Not started here: the gateway's job-worker service starts and stops it.
 */
export function describeStudyWorker(
  config: RadScribeConfig,
  db: Database,
  model: InferenceClient,
  images: ImagePrepClient,
  remote: RemoteWiring,
): JobWorker {
  const draftModel: DraftModel = {
    info: model.identity,
    // The bundle's own preprocessor_config.json drives the tiler (Mllama tiles or the plain path).
    preprocessorConfig: model.preprocessorConfig,
    describe: (input, o) =>
      model.describe(input, {
        ...describeCallOptions(config),
        ...(o.signal ? { signal: o.signal } : {}),
      }),
  };
  const transcoding = new TranscodingCache({
    dir: path.join(config.dataDir, 'transcoded'),
    fetch: async (node, ref) => {
      const client = remote.clients.get(node);
      return client ? (await retrieveTranscoded(client, ref)).bytes : undefined;
    },
  });
  const instances = new InstanceRepository(db.pool);
  const recorder = new AuditRecorder(db.pool);
  const quarantine = new InstanceQuarantine(db.pool);
  const ledger = new SrExportLedger(db.pool);
  return new JobWorker({
    pool: db.pool,
    // jobs.maxAttempts is written to each job at enqueue; the backoff keys drive FAIL_JOB.
    queue: new JobQueue(db.pool, jobQueueOptions(config)),
    ...jobWorkerOptions(config),
    handler: (job, signal, progress) =>
      describeStudy(
        {
          listInstances: (uid) => instances.listForStudy(uid),
          studyVersion: (uid) => getStudyVersion(db.pool, uid),
          model: draftModel,
          images,
          selection: config.selection,
          routes: config.routes,
          defaultDestination: config.defaultDestination,
          destinations: remote.destinations,
          recorder,
          ledger,
          transcode: (inst, where) => transcoding.transcode(inst, where),
          quarantine,
          // Routing rules' `tags` conditions: one header read per series (src/ingest/header-tags.ts).
          readTags: async (inst, tags) =>
            (await readHeaderTags(inst.filePath, tags, { limits: config.dicomLimits })).tags,
          ...(remote.pdfFonts ? { pdfFonts: remote.pdfFonts } : {}),
        },
        job,
        signal,
        progress,
      ),
  });
}
