/**
 * Which frames of a study go to the model (configurable per modality; issue #3 refines the policy).
 *
 * Defaults and why:
 * - Projection modalities (CR, DX, MG, US, XA…): every image is a separate view a radiologist reads,
 *   so each image is described. For a multi-frame projection object (US/XA cine) the middle frame is
 *   used: the first frames of a cine loop are often run-in, the middle one is representative.
 * - Cross-sectional modalities (CT, MR, PT, NM…): hundreds of slices per series; describing each is
 *   slow and the model is trained on single figure images (ROCOv2), so `perSeriesSlices` evenly
 *   spaced slices per series are described (1 → the middle slice by Instance Number).
 * Objects without pixel data (SR, KO, PR…) are never selected.
 */

import type { StoredInstance } from '../ingest/types.js';

/**
 * What selection reads of an instance: the columns ingest stored from its header (issue 8: frame
 * selection reads rows, not files). A `StoredInstance` row is a candidate as it is; `radscribe
 * describe` builds the same shape from the files it is given, so both choose the same frames.
 */
export type ImageCandidate = Pick<
  StoredInstance,
  | 'sopInstanceUid'
  | 'seriesInstanceUid'
  | 'sopClassUid'
  | 'modality'
  | 'instanceNumber'
  | 'numberOfFrames'
  | 'hasPixelData'
>;

export interface SelectedFrame<C extends ImageCandidate = ImageCandidate> {
  readonly candidate: C;
  /** 0-based frame index. */
  readonly frameIndex: number;
}

export interface SelectionPolicy {
  /** Modalities whose every image is described (projection images). */
  readonly eachImage: readonly string[];
  /** Evenly spaced slices per cross-sectional series (1 → the middle one). */
  readonly perSeriesSlices: number;
  /**
   * Frames described per multi-frame object of an `eachImage` modality (US/XA cine loops), evenly
   * spaced and centred. Default {@link DEFAULT_MULTI_FRAME_FRAMES} = 1: the middle frame.
   */
  readonly multiFrameFrames?: number;
}

/**
 * One frame per cine loop: consecutive US/XA frames are nearly identical, and the loop's first
 * frames are often run-in (probe settling, contrast not yet arrived); the middle frame is the
 * representative one. Raise it per site for stress-echo or angiography runs.
 */
export const DEFAULT_MULTI_FRAME_FRAMES = 1;

/** n indices evenly spaced over [0, count), centred (n = 1 → the middle one). */
export function evenlySpaced(count: number, n: number): number[] {
  if (count <= 0) return [];
  const k = Math.min(n, count);
  const out: number[] = [];
  for (let i = 0; i < k; i++) out.push(Math.floor(((i + 0.5) * count) / k));
  return out;
}

export function selectFrames<C extends ImageCandidate>(
  candidates: readonly C[],
  policy: SelectionPolicy,
): SelectedFrame<C>[] {
  const images = candidates.filter((c) => c.hasPixelData);
  const each = new Set(policy.eachImage.map((m) => m.toUpperCase()));
  const out: SelectedFrame<C>[] = [];
  const bySeries = new Map<string, C[]>();
  for (const c of images) {
    if (each.has((c.modality ?? '').toUpperCase())) {
      const k = c.numberOfFrames > 1 ? Math.max(1, policy.multiFrameFrames ?? DEFAULT_MULTI_FRAME_FRAMES) : 1;
      for (const f of evenlySpaced(c.numberOfFrames, k)) out.push({ candidate: c, frameIndex: f });
    } else {
      const list = bySeries.get(c.seriesInstanceUid) ?? [];
      list.push(c);
      bySeries.set(c.seriesInstanceUid, list);
    }
  }
  for (const list of bySeries.values()) {
    list.sort(
      (a, b) => (a.instanceNumber ?? 0) - (b.instanceNumber ?? 0) || a.sopInstanceUid.localeCompare(b.sopInstanceUid),
    );
    if (list.length === 1 && list[0] && list[0].numberOfFrames > 1) {
      // One enhanced multi-frame object holds the whole series: spread over its frames.
      const only = list[0];
      for (const f of evenlySpaced(only.numberOfFrames, policy.perSeriesSlices))
        out.push({ candidate: only, frameIndex: f });
      continue;
    }
    for (const i of evenlySpaced(list.length, policy.perSeriesSlices)) {
      const c = list[i];
      if (c) out.push({ candidate: c, frameIndex: evenlySpaced(c.numberOfFrames, 1)[0] ?? 0 });
    }
  }
  // Stable order: by series, then instance number, so the SR lists findings predictably.
  return out.sort(
    (a, b) =>
      a.candidate.seriesInstanceUid.localeCompare(b.candidate.seriesInstanceUid) ||
      (a.candidate.instanceNumber ?? 0) - (b.candidate.instanceNumber ?? 0) ||
      a.frameIndex - b.frameIndex,
  );
}
