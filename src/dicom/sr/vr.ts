/**
 * Character rules of the string VRs the SR writer uses (PS3.5 §6.1.2–6.1.3, Table 6.2-1).
 * Code-point predicates instead of regexes with control-character ranges, which are easy to get wrong.
 */

/** C0 controls, DEL and C1 controls. */
function isControl(cp: number): boolean {
  return cp < 0x20 || (cp >= 0x7f && cp <= 0x9f);
}

/**
 * True when `s` fits SH/LO: non-blank, at most `max` characters, no backslash (the value-multiplicity
 * separator, PS3.5 §6.4) and no control characters (SH/LO admit ESC only for ISO 2022, unused with ISO_IR 192).
 */
export function isShortOrLongString(s: unknown, max: number): s is string {
  if (typeof s !== 'string' || s.trim().length === 0 || s.length > max) return false;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c === 0x5c || isControl(c)) return false;
  }
  return true;
}

/** UT admits CR, LF, FF and (by common practice) TAB among the controls (PS3.5 Table 6.2-1). */
const UT_CONTROLS_ALLOWED: ReadonlySet<number> = new Set([0x09, 0x0a, 0x0c, 0x0d]);

/**
 * Index of the first UTF-16 code unit not allowed in a UT value: a control character other than
 * TAB/LF/FF/CR, or a lone surrogate (it cannot be encoded in UTF-8). -1 when the text is clean.
 */
export function firstForbiddenUtIndex(s: string): number {
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (isControl(c) && !UT_CONTROLS_ALLOWED.has(c)) return i;
    if (c >= 0xd800 && c <= 0xdbff) {
      const next = s.charCodeAt(i + 1);
      if (next >= 0xdc00 && next <= 0xdfff) {
        i++;
        continue;
      }
      return i;
    }
    if (c >= 0xdc00 && c <= 0xdfff) return i;
  }
  return -1;
}

/** Replace every character {@link firstForbiddenUtIndex} would flag with U+FFFD. */
export function replaceForbiddenUt(s: string): string {
  let out = '';
  let from = 0;
  for (let i = firstForbiddenUtIndex(s); i >= 0; i = firstForbiddenUtIndex(s.slice(from))) {
    out += `${s.slice(from, from + i)}\ufffd`;
    from += i + 1;
  }
  return out + s.slice(from);
}
