import type { Queryable } from '../db/pool.js';
import { SrExportLedger } from '../export/sr-export-ledger.js';
import { InstanceRepository } from '../ingest/instance-repository.js';
import type { HeldStudyView } from '../pacs/qido-poller.js';

/**
 * What the gateway holds of a study, for the QIDO-RS poller's late-series comparison (issue 11): the
 * instances ingest stored (their owner, instance-repository.ts) and the series of our own exported
 * drafts (the export ledger), which are never taken for new input.
 */
export function heldStudyView(q: Queryable): HeldStudyView {
  const instances = new InstanceRepository(q);
  const ledger = new SrExportLedger(q);
  return {
    heldInstancesBySeries: (studyInstanceUid) => instances.heldInstancesBySeries(studyInstanceUid),
    exportedSeriesOf: (studyInstanceUid) => ledger.exportedSeriesOf(studyInstanceUid),
  };
}
