/**
 * Application Entity titles (PS3.5 Table 6.2-1, VR AE): at most 16 characters of the Default
 * Character Repertoire, no backslash (the value separator) and no control characters; leading and
 * trailing spaces are not significant, so a value of only spaces is no title at all. As on the wire
 * (PS3.8 §9.3.2, a 16-byte field), titles are compared after trimming those spaces.
 * pynetdicom `_validators.validate_ae` returns `(ok, reason)`; so does `aeTitleProblem` here.
 */

/** Largest AE value in characters (PS3.5 Table 6.2-1). */
export const AE_TITLE_MAX_LENGTH = 16;

/** Why `value` is not a valid AE title, or undefined when it is. */
export function aeTitleProblem(value: string): string | undefined {
  if (value.length === 0) return 'must not be empty';
  if (value.length > AE_TITLE_MAX_LENGTH) return `must be at most ${AE_TITLE_MAX_LENGTH} characters`;
  if (value.includes('\\')) return 'must not contain a backslash';
  // Default Character Repertoire: ISO 646 G0 (0x20–0x7E); no control characters (PS3.5 §6.1.2.1).
  if (!/^[\x20-\x7e]+$/.test(value)) return 'must contain only printable ASCII characters (no control characters)';
  if (value.trim() === '') return 'must not be all spaces';
  return undefined;
}

export function isValidAeTitle(value: string): boolean {
  return aeTitleProblem(value) === undefined;
}

/** The significant part of an AE value (leading/trailing spaces dropped, PS3.5 Table 6.2-1). */
export function normalizeAeTitle(value: string): string {
  return value.trim();
}

/** Whether two AE values name the same entity (case-sensitive, spaces at the ends ignored). */
export function sameAeTitle(a: string, b: string): boolean {
  return normalizeAeTitle(a) === normalizeAeTitle(b);
}

/** The 16-byte, space-padded field of an A-ASSOCIATE-RQ/AC (PS3.8 Table 9-11). */
export function aeTitleField(value: string): Buffer {
  const b = Buffer.alloc(AE_TITLE_MAX_LENGTH, 0x20);
  b.write(value.slice(0, AE_TITLE_MAX_LENGTH), 'latin1');
  return b;
}
