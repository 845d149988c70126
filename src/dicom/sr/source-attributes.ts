import type { NaturalDataset } from '../dataset.js';

/**
 * The Patient, General Study and Patient Study attributes an SR copies from its source (PS3.3
 * C.7.1.1, C.7.2.1, C.7.2.2), checked against their VRs (PS3.5 §6.2) before they are written.
 * Sources in a PACS archive carry what older standards or careless writers allowed: ACR-NEMA dates
 * (`YYYY.MM.DD`), times with colons, impossible dates, over-long strings, text that could not be
 * decoded. What the standard defines a mapping for is normalised; what cannot be represented is
 * dropped as the module's Type allows (Type 2: present but empty; Type 3: omitted), and each change is
 * noted by tag and reason only (the notes go to the audit trail: no values, they are PHI).
 * Pure: a dataset in, a dataset and notes out.
 */

/** What happened to a source attribute on its way into the SR. */
export const SourceAttributeAction = {
  /** Rewritten into the current form of its VR (same meaning). */
  Normalised: 'normalised',
  /** Type 2 attribute written empty: its value cannot be represented. */
  Emptied: 'emptied',
  /** Type 3 attribute left out: its value cannot be represented. */
  Omitted: 'omitted',
} as const;
export type SourceAttributeAction = (typeof SourceAttributeAction)[keyof typeof SourceAttributeAction];

/** Why. */
export const SourceAttributeReason = {
  /** A retired ACR-NEMA form (PS3.5 §6.2 DA / TM notes: `YYYY.MM.DD`, `HH:MM:SS.frac`). */
  RetiredFormat: 'retired-format',
  /** A TM fraction longer than the 6 digits TM holds: truncated. */
  FractionTruncated: 'fraction-truncated',
  /** Not a value of the VR (impossible date, wrong pattern, not an enumerated value). */
  InvalidValue: 'invalid-value',
  /** Longer than the VR's maximum (PS3.5 Table 6.2-1). */
  TooLong: 'too-long',
  /** Characters the source's character set could not decode (U+FFFD) or control characters (ESC …). */
  UndecodableText: 'undecodable-text',
  /** Neither a string nor the shape dcmjs gives the VR. */
  UnexpectedShape: 'unexpected-shape',
} as const;
export type SourceAttributeReason = (typeof SourceAttributeReason)[keyof typeof SourceAttributeReason];

export interface SourceAttributeNote {
  /** `(gggg,eeee)`. */
  readonly tag: string;
  readonly keyword: string;
  readonly action: SourceAttributeAction;
  readonly reason: SourceAttributeReason;
}

type Vr = 'PN' | 'LO' | 'SH' | 'DA' | 'TM' | 'CS' | 'AS' | 'SQ';

interface CopiedAttribute {
  readonly keyword: string;
  readonly tag: string;
  readonly vr: Vr;
  readonly type: 2 | 3;
  /** Enumerated values (PS3.3) for CS attributes. */
  readonly enumerated?: readonly string[];
}

/** The copied attributes with their tags, VRs and Types (PS3.3 Tables C.7-1, C.7-3, C.7-4a). */
export const COPIED_SOURCE_ATTRIBUTES: readonly CopiedAttribute[] = [
  { keyword: 'PatientName', tag: '(0010,0010)', vr: 'PN', type: 2 },
  { keyword: 'PatientID', tag: '(0010,0020)', vr: 'LO', type: 2 },
  { keyword: 'PatientBirthDate', tag: '(0010,0030)', vr: 'DA', type: 2 },
  { keyword: 'PatientSex', tag: '(0010,0040)', vr: 'CS', type: 2, enumerated: ['M', 'F', 'O'] },
  { keyword: 'StudyDate', tag: '(0008,0020)', vr: 'DA', type: 2 },
  { keyword: 'StudyTime', tag: '(0008,0030)', vr: 'TM', type: 2 },
  { keyword: 'ReferringPhysicianName', tag: '(0008,0090)', vr: 'PN', type: 2 },
  { keyword: 'StudyID', tag: '(0020,0010)', vr: 'SH', type: 2 },
  { keyword: 'AccessionNumber', tag: '(0008,0050)', vr: 'SH', type: 2 },
  { keyword: 'IssuerOfPatientID', tag: '(0010,0021)', vr: 'LO', type: 3 },
  { keyword: 'OtherPatientIDsSequence', tag: '(0010,1002)', vr: 'SQ', type: 3 },
  { keyword: 'PatientAge', tag: '(0010,1010)', vr: 'AS', type: 3 },
  { keyword: 'StudyDescription', tag: '(0008,1030)', vr: 'LO', type: 3 },
  { keyword: 'IssuerOfAccessionNumberSequence', tag: '(0008,0051)', vr: 'SQ', type: 3 },
  { keyword: 'PatientIdentityRemoved', tag: '(0012,0062)', vr: 'CS', type: 3, enumerated: ['YES', 'NO'] },
  { keyword: 'DeidentificationMethod', tag: '(0012,0063)', vr: 'LO', type: 3 },
  { keyword: 'DeidentificationMethodCodeSequence', tag: '(0012,0064)', vr: 'SQ', type: 3 },
];

/** Character limits (PS3.5 Table 6.2-1); PN per component group. */
const MAX_CHARS: Readonly<Record<'PN' | 'LO' | 'SH', number>> = { PN: 64, LO: 64, SH: 16 };

/** Outcome of checking one value. */
type Checked =
  | { readonly ok: true; readonly value: unknown; readonly normalised?: SourceAttributeReason }
  | { readonly ok: false; readonly reason: SourceAttributeReason };

function isEmpty(v: unknown): boolean {
  return v === undefined || v === null || v === '' || (Array.isArray(v) && v.length === 0);
}

/** C0/C1 controls (ESC included), DEL and U+FFFD: text that was not decoded into what it says. */
function hasUndecodable(s: string): boolean {
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c < 0x20 || (c >= 0x7f && c <= 0x9f) || c === 0xfffd) return true;
  }
  return false;
}

function checkString(s: unknown, max: number): Checked {
  if (typeof s !== 'string') return { ok: false, reason: SourceAttributeReason.UnexpectedShape };
  if (hasUndecodable(s)) return { ok: false, reason: SourceAttributeReason.UndecodableText };
  if (s.includes('\\')) return { ok: false, reason: SourceAttributeReason.InvalidValue };
  // Characters, not UTF-16 code units: PS3.5 counts characters.
  if ([...s].length > max) return { ok: false, reason: SourceAttributeReason.TooLong };
  return { ok: true, value: s };
}

/** A string or a list of strings (VM > 1), each checked. */
function checkStrings(v: unknown, max: number): Checked {
  const list = Array.isArray(v) ? v : [v];
  for (const s of list) {
    const r = checkString(s, max);
    if (!r.ok) return r;
  }
  return { ok: true, value: v };
}

/** PN as dcmjs gives it (a string, or [{Alphabetic, Ideographic, Phonetic}]): each component group ≤ 64. */
function checkPersonName(v: unknown): Checked {
  const list = Array.isArray(v) ? v : [v];
  for (const item of list) {
    const groups =
      typeof item === 'string'
        ? item.split('=')
        : item !== null && typeof item === 'object'
          ? Object.entries(item as Record<string, unknown>)
              .filter(([k]) => k === 'Alphabetic' || k === 'Ideographic' || k === 'Phonetic')
              .map(([, g]) => g)
          : undefined;
    if (groups === undefined || (typeof item === 'string' && groups.length > 3)) {
      return { ok: false, reason: SourceAttributeReason.UnexpectedShape };
    }
    for (const g of groups) {
      const r = checkString(g, MAX_CHARS.PN);
      if (!r.ok) return r;
    }
  }
  return { ok: true, value: v };
}

function isCalendarDate(y: number, m: number, d: number): boolean {
  if (m < 1 || m > 12 || d < 1) return false;
  const leap = (y % 4 === 0 && y % 100 !== 0) || y % 400 === 0;
  const days = [31, leap ? 29 : 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31][m - 1] ?? 0;
  return d <= days;
}

/**
 * DA (PS3.5 §6.2): `YYYYMMDD`. The ACR-NEMA form `YYYY.MM.DD` ("shall not be used", but Part 5 still
 * defines its meaning) becomes `YYYYMMDD`; anything else is not a date.
 */
export function normaliseDate(v: unknown): Checked {
  if (typeof v !== 'string') return { ok: false, reason: SourceAttributeReason.UnexpectedShape };
  const s = v.trim();
  const m = /^(\d{4})(\.?)(\d{2})\2(\d{2})$/.exec(s);
  if (!m) return { ok: false, reason: SourceAttributeReason.InvalidValue };
  const [, y, dot, mo, d] = m;
  if (!isCalendarDate(Number(y), Number(mo), Number(d)))
    return { ok: false, reason: SourceAttributeReason.InvalidValue };
  const value = `${y}${mo}${d}`;
  return dot === '.' ? { ok: true, value, normalised: SourceAttributeReason.RetiredFormat } : { ok: true, value };
}

/**
 * TM (PS3.5 §6.2): `HH[MM[SS[.F{1,6}]]]`, HH 00–23, MM 00–59, SS 00–60 (leap second). The ACR-NEMA
 * form `HH:MM:SS.frac` loses its colons; a fraction longer than 6 digits is truncated to 6.
 */
export function normaliseTime(v: unknown): Checked {
  if (typeof v !== 'string') return { ok: false, reason: SourceAttributeReason.UnexpectedShape };
  const s = v.trim();
  const m = /^(\d{2})(?:(:?)(\d{2})(?:\2(\d{2})(?:\.(\d+))?)?)?$/.exec(s);
  if (!m) return { ok: false, reason: SourceAttributeReason.InvalidValue };
  const [, hh, colon, mm, ss, frac] = m;
  if (Number(hh) > 23 || (mm !== undefined && Number(mm) > 59) || (ss !== undefined && Number(ss) > 60)) {
    return { ok: false, reason: SourceAttributeReason.InvalidValue };
  }
  const value = `${hh}${mm ?? ''}${ss ?? ''}${frac !== undefined ? `.${frac.slice(0, 6)}` : ''}`;
  if (colon === ':') return { ok: true, value, normalised: SourceAttributeReason.RetiredFormat };
  if (frac !== undefined && frac.length > 6) {
    return { ok: true, value, normalised: SourceAttributeReason.FractionTruncated };
  }
  return { ok: true, value };
}

function checkCodeString(v: unknown, enumerated: readonly string[] | undefined): Checked {
  if (typeof v !== 'string') return { ok: false, reason: SourceAttributeReason.UnexpectedShape };
  const s = v.trim();
  if (!/^[A-Z0-9_ ]{1,16}$/.test(s) || (enumerated !== undefined && !enumerated.includes(s))) {
    return { ok: false, reason: SourceAttributeReason.InvalidValue };
  }
  return { ok: true, value: s };
}

/** AS (PS3.5 §6.2): `nnnD`, `nnnW`, `nnnM` or `nnnY`. */
function checkAge(v: unknown): Checked {
  if (typeof v !== 'string') return { ok: false, reason: SourceAttributeReason.UnexpectedShape };
  return /^\d{3}[DWMY]$/.test(v.trim())
    ? { ok: true, value: v.trim() }
    : { ok: false, reason: SourceAttributeReason.InvalidValue };
}

/** A sequence is copied whole or not at all: every string in it must be clean and fit LO. */
function checkSequence(v: unknown): Checked {
  if (!Array.isArray(v)) return { ok: false, reason: SourceAttributeReason.UnexpectedShape };
  const walk = (x: unknown, depth: number): SourceAttributeReason | undefined => {
    if (depth > 8) return SourceAttributeReason.UnexpectedShape;
    if (typeof x === 'string') return checkString(x, 1024).ok ? undefined : SourceAttributeReason.UndecodableText;
    if (Array.isArray(x)) {
      for (const e of x) {
        const r = walk(e, depth + 1);
        if (r) return r;
      }
      return undefined;
    }
    if (x !== null && typeof x === 'object') return walk(Object.values(x as Record<string, unknown>), depth + 1);
    return undefined;
  };
  const reason = walk(v, 0);
  return reason === undefined ? { ok: true, value: v } : { ok: false, reason };
}

function check(attr: CopiedAttribute, v: unknown): Checked {
  switch (attr.vr) {
    case 'PN':
      return checkPersonName(v);
    case 'LO':
    case 'SH':
      return checkStrings(v, MAX_CHARS[attr.vr]);
    case 'DA':
      return normaliseDate(v);
    case 'TM':
      return normaliseTime(v);
    case 'CS':
      return checkCodeString(v, attr.enumerated);
    case 'AS':
      return checkAge(v);
    case 'SQ':
      return checkSequence(v);
  }
}

export interface CopiedSourceAttributes {
  /** Keyword → value, ready for the SR data set (Type 2 always present, Type 3 only when kept). */
  readonly attributes: NaturalDataset;
  readonly notes: readonly SourceAttributeNote[];
}

/** Copy the Patient / Study attributes of `source` into SR form, noting every change. */
export function copySourceAttributes(source: NaturalDataset): CopiedSourceAttributes {
  const attributes: NaturalDataset = {};
  const notes: SourceAttributeNote[] = [];
  for (const attr of COPIED_SOURCE_ATTRIBUTES) {
    const v = source[attr.keyword];
    if (isEmpty(v)) {
      if (attr.type === 2) attributes[attr.keyword] = '';
      continue;
    }
    const r = check(attr, v);
    const note = (action: SourceAttributeAction, reason: SourceAttributeReason) =>
      notes.push({ tag: attr.tag, keyword: attr.keyword, action, reason });
    if (r.ok) {
      attributes[attr.keyword] = r.value;
      if (r.normalised !== undefined) note(SourceAttributeAction.Normalised, r.normalised);
    } else if (attr.type === 2) {
      attributes[attr.keyword] = '';
      note(SourceAttributeAction.Emptied, r.reason);
    } else {
      note(SourceAttributeAction.Omitted, r.reason);
    }
  }
  return { attributes, notes };
}
