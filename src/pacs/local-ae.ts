import { aeTitleProblem, normalizeAeTitle, sameAeTitle } from '../dimse/ae-title.js';
import { ErrorCode, RadScribeError } from '../errors.js';

/**
 * The local AE of a per-AE DICOMweb path, /dicomweb/aets/{AET}/… (issue 11): the same AE titles as
 * the DIMSE listeners (config `dimse.listeners[].aeTitle`), so a STOW-RS to a title is received as a
 * C-STORE to that Called AE would be, and WADO-RS under it serves what was sent to it. The segment is
 * already percent-decoded by the router. A value that is no AE title (PS3.5 AE VR) is a 400; a
 * valid title RadScribe does not have is a 404 (PS3.18 §8.6: the target resource does not exist).
 */
export function resolveLocalAe(segment: string, localAeTitles: readonly string[]): string {
  const why = aeTitleProblem(segment);
  if (why) throw new RadScribeError(ErrorCode.RequestInvalid, `AE title in the request URI ${why}`);
  const known = localAeTitles.find((t) => sameAeTitle(t, segment));
  if (known === undefined) throw new RadScribeError(ErrorCode.NotFound, 'no such local AE title on this gateway');
  return normalizeAeTitle(known);
}

/** The path of a per-AE service below the DICOMweb base: `/aets/{AET}` (percent-encoded), or '' for none. */
export function aePath(aeTitle: string | undefined): string {
  return aeTitle === undefined ? '' : `/aets/${encodeURIComponent(aeTitle)}`;
}
