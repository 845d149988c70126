import {
  DEFAULT_QIDO_FULL_SCAN_INTERVAL_MS,
  DEFAULT_QIDO_OVERLAP_MS,
  DEFAULT_QIDO_WATCH_MS,
  ModalityFilter,
} from '../pacs/qido-poller.js';

/**
 * `remoteNodes[].poll` keys of the QIDO-RS poller's incremental window (issue 11; src/pacs/qido-poller.ts):
 *
 *   overlapMs           the window starts this long before the last successful poll's end (default 2 h)
 *   fullScanIntervalMs  the whole lookback is searched again this often (default 1 h)
 *   watchMs             studies first seen this recently are asked for by UID every poll (default 2 h)
 *   modalities          ModalitiesInStudy values, any of which a study must hold (default: all)
 *   modalityFilter      server (sent as a match key, default) or client (checked on the answer only)
 *   maxResults          the PACS's own maximum answers per search (Orthanc: LimitFindResults); 0 = none
 *
 * Validated into the node's poll object, beside the keys config.ts reads there.
 */
export interface QidoPollWindowConfig {
  overlapMs: number;
  fullScanIntervalMs: number;
  watchMs: number;
  modalities: string[];
  modalityFilter: ModalityFilter;
  maxResults: number;
}

export const QIDO_POLL_WINDOW_DEFAULTS: Readonly<QidoPollWindowConfig> = {
  overlapMs: DEFAULT_QIDO_OVERLAP_MS,
  fullScanIntervalMs: DEFAULT_QIDO_FULL_SCAN_INTERVAL_MS,
  watchMs: DEFAULT_QIDO_WATCH_MS,
  modalities: [],
  modalityFilter: ModalityFilter.Server,
  maxResults: 0,
};

/** The part of config.ts's validator this section uses (it reports every problem, then fails once). */
export interface PollValidator {
  has(o: Record<string, unknown>, k: string): boolean;
  int(
    o: Record<string, unknown>,
    k: string,
    parent: string | undefined,
    min: number,
    max: number,
    dflt?: number,
  ): number;
  str(o: Record<string, unknown>, k: string, parent?: string): string;
  strArr(o: Record<string, unknown>, k: string, parent?: string): string[];
  problem(p: string, msg: string): void;
}

const WEEK_MS = 7 * 86_400_000;
/** CS (PS3.5 Table 6.2-1): 16 characters at most, upper case, digits, space, underscore. */
const CS = /^[A-Z0-9_ ]{1,16}$/;

export function validateQidoPollWindow(
  v: PollValidator,
  poll: Record<string, unknown>,
  pp: string,
): QidoPollWindowConfig {
  const d = QIDO_POLL_WINDOW_DEFAULTS;
  const modalities = v.has(poll, 'modalities') ? v.strArr(poll, 'modalities', pp) : [];
  modalities.forEach((m, i) => {
    if (!CS.test(m)) v.problem(`${pp}.modalities[${i}]`, 'must be a modality code (CS: A–Z, 0–9, _ , space; 1–16)');
  });
  let modalityFilter = d.modalityFilter;
  if (v.has(poll, 'modalityFilter')) {
    const f = v.str(poll, 'modalityFilter', pp);
    const all: readonly string[] = Object.values(ModalityFilter);
    if (all.includes(f)) modalityFilter = f as ModalityFilter;
    else v.problem(`${pp}.modalityFilter`, `must be one of ${all.join(', ')}`);
  }
  return {
    overlapMs: v.int(poll, 'overlapMs', pp, 0, WEEK_MS, d.overlapMs),
    fullScanIntervalMs: v.int(poll, 'fullScanIntervalMs', pp, 0, WEEK_MS, d.fullScanIntervalMs),
    watchMs: v.int(poll, 'watchMs', pp, 0, WEEK_MS, d.watchMs),
    modalities,
    modalityFilter,
    maxResults: v.int(poll, 'maxResults', pp, 0, 1_000_000, d.maxResults),
  };
}
