/**
 * Specific Character Set (0008,0005) decoding: PS3.3 C.12.1.1.2 (the defined terms, Tables C.12-2 to
 * C.12-5) and PS3.5 §6.1 (repertoires, ISO/IEC 2022 code extensions). Bytes in, Unicode out; no I/O.
 *
 * Code-page conversion is Node's TextDecoder (WHATWG Encoding, full ICU); the ISO 2022 state machine
 * (escape sequences designating G0/G1, reset at delimiters, PS3.5 §6.1.2.5.3) is ours, because no
 * decoder implements DICOM's subset of it (it differs from ISO-2022-JP and mixes sets per value).
 *
 * Whatever cannot be decoded becomes U+FFFD and the result says `lossy`, so callers that must not
 * write guessed text (the SR writer) can drop the value instead.
 */

/** The defined terms of PS3.3 C.12.1.1.2, as a closed set. */
export const CharacterSetTerm = {
  // Table C.12-2: single-byte, without code extensions.
  Default: '',
  Latin1: 'ISO_IR 100',
  Latin2: 'ISO_IR 101',
  Latin3: 'ISO_IR 109',
  Latin4: 'ISO_IR 110',
  Cyrillic: 'ISO_IR 144',
  Arabic: 'ISO_IR 127',
  Greek: 'ISO_IR 126',
  Hebrew: 'ISO_IR 138',
  Latin5: 'ISO_IR 148',
  Latin9: 'ISO_IR 203',
  Japanese: 'ISO_IR 13',
  Thai: 'ISO_IR 166',
  // Table C.12-3: single-byte, with code extensions.
  Iso2022Default: 'ISO 2022 IR 6',
  Iso2022Latin1: 'ISO 2022 IR 100',
  Iso2022Latin2: 'ISO 2022 IR 101',
  Iso2022Latin3: 'ISO 2022 IR 109',
  Iso2022Latin4: 'ISO 2022 IR 110',
  Iso2022Cyrillic: 'ISO 2022 IR 144',
  Iso2022Arabic: 'ISO 2022 IR 127',
  Iso2022Greek: 'ISO 2022 IR 126',
  Iso2022Hebrew: 'ISO 2022 IR 138',
  Iso2022Latin5: 'ISO 2022 IR 148',
  Iso2022Latin9: 'ISO 2022 IR 203',
  Iso2022Japanese: 'ISO 2022 IR 13',
  Iso2022Thai: 'ISO 2022 IR 166',
  // Table C.12-4: multi-byte, with code extensions.
  Iso2022JisX0208: 'ISO 2022 IR 87',
  Iso2022JisX0212: 'ISO 2022 IR 159',
  Iso2022KsX1001: 'ISO 2022 IR 149',
  Iso2022Gb2312: 'ISO 2022 IR 58',
  // Table C.12-5: multi-byte, without code extensions.
  Utf8: 'ISO_IR 192',
  Gb18030: 'GB18030',
  Gbk: 'GBK',
} as const;
export type CharacterSetTerm = (typeof CharacterSetTerm)[keyof typeof CharacterSetTerm];
const TERMS: ReadonlySet<string> = new Set(Object.values(CharacterSetTerm));
export function isCharacterSetTerm(v: unknown): v is CharacterSetTerm {
  return typeof v === 'string' && TERMS.has(v);
}

/** How a code element's bytes become text. */
type Repertoire =
  | { readonly kind: 'ascii' }
  /** JIS X 0201 Romaji: ASCII except 0x5C YEN SIGN and 0x7E OVERLINE. */
  | { readonly kind: 'romaji' }
  /** A 96-character set in GR (0xA0–0xFF), decoded with a WHATWG single-byte decoder. */
  | { readonly kind: 'gr96'; readonly label: string }
  /** JIS X 0201 Katakana in GR (0xA1–0xDF → U+FF61–U+FF9F). */
  | { readonly kind: 'katakana' }
  /** A 94×94 two-byte set; `form` says how its bytes map onto a decoder TextDecoder knows. */
  | { readonly kind: 'dbcs'; readonly form: 'euc-jp' | 'euc-jp-0212' | 'euc-kr' | 'euc-cn' };

/**
 * ISO 2022 code elements (PS3.3 Tables C.12-3 and C.12-4): the escape sequence that designates each,
 * whether it goes to G0 (GL) or G1 (GR), and its repertoire.
 */
interface CodeElement {
  readonly escape: string;
  readonly g: 0 | 1;
  readonly rep: Repertoire;
}
const ASCII: CodeElement = { escape: '\x1b(B', g: 0, rep: { kind: 'ascii' } };
const ROMAJI: CodeElement = { escape: '\x1b(J', g: 0, rep: { kind: 'romaji' } };
const KATAKANA: CodeElement = { escape: '\x1b)I', g: 1, rep: { kind: 'katakana' } };
const grSet = (seq: string, label: string): CodeElement => ({ escape: seq, g: 1, rep: { kind: 'gr96', label } });

/** Code elements of each ISO 2022 term (PS3.3 C.12-3 / C.12-4). */
const ISO2022_ELEMENTS: Readonly<Record<string, readonly CodeElement[]>> = {
  'ISO 2022 IR 6': [ASCII],
  'ISO 2022 IR 100': [ASCII, grSet('\x1b-A', 'iso-8859-1')],
  'ISO 2022 IR 101': [ASCII, grSet('\x1b-B', 'iso-8859-2')],
  'ISO 2022 IR 109': [ASCII, grSet('\x1b-C', 'iso-8859-3')],
  'ISO 2022 IR 110': [ASCII, grSet('\x1b-D', 'iso-8859-4')],
  'ISO 2022 IR 144': [ASCII, grSet('\x1b-L', 'iso-8859-5')],
  'ISO 2022 IR 127': [ASCII, grSet('\x1b-G', 'iso-8859-6')],
  'ISO 2022 IR 126': [ASCII, grSet('\x1b-F', 'iso-8859-7')],
  'ISO 2022 IR 138': [ASCII, grSet('\x1b-H', 'iso-8859-8')],
  'ISO 2022 IR 148': [ASCII, grSet('\x1b-M', 'iso-8859-9')],
  'ISO 2022 IR 203': [ASCII, grSet('\x1b-b', 'iso-8859-15')],
  'ISO 2022 IR 13': [ROMAJI, KATAKANA],
  'ISO 2022 IR 166': [ASCII, grSet('\x1b-T', 'windows-874')],
  'ISO 2022 IR 87': [{ escape: '\x1b$B', g: 0, rep: { kind: 'dbcs', form: 'euc-jp' } }],
  'ISO 2022 IR 159': [{ escape: '\x1b$(D', g: 0, rep: { kind: 'dbcs', form: 'euc-jp-0212' } }],
  'ISO 2022 IR 149': [{ escape: '\x1b$)C', g: 1, rep: { kind: 'dbcs', form: 'euc-kr' } }],
  'ISO 2022 IR 58': [{ escape: '\x1b$)A', g: 1, rep: { kind: 'dbcs', form: 'euc-cn' } }],
};

/**
 * Terms without code extensions and the decoder of each (PS3.3 C.12-2 / C.12-5). ISO-IR 100 is real
 * ISO 8859-1 (the WHATWG "iso-8859-1" label is windows-1252, which differs in 0x80–0x9F); TIS 620 is
 * windows-874, identical in the range TIS 620 defines; GBK is decoded by the GB18030 decoder (a superset).
 */
const SINGLE: Readonly<Record<string, Repertoire | 'utf-8' | 'gb18030' | 'latin1' | 'jisx0201'>> = {
  'ISO_IR 100': 'latin1',
  'ISO_IR 101': { kind: 'gr96', label: 'iso-8859-2' },
  'ISO_IR 109': { kind: 'gr96', label: 'iso-8859-3' },
  'ISO_IR 110': { kind: 'gr96', label: 'iso-8859-4' },
  'ISO_IR 144': { kind: 'gr96', label: 'iso-8859-5' },
  'ISO_IR 127': { kind: 'gr96', label: 'iso-8859-6' },
  'ISO_IR 126': { kind: 'gr96', label: 'iso-8859-7' },
  'ISO_IR 138': { kind: 'gr96', label: 'iso-8859-8' },
  'ISO_IR 148': { kind: 'gr96', label: 'iso-8859-9' },
  'ISO_IR 203': { kind: 'gr96', label: 'iso-8859-15' },
  'ISO_IR 166': { kind: 'gr96', label: 'windows-874' },
  'ISO_IR 13': 'jisx0201',
  'ISO_IR 192': 'utf-8',
  GB18030: 'gb18030',
  GBK: 'gb18030',
};

/** What the text is part of: PN resets at component (group) delimiters too (PS3.5 §6.1.2.5.3). */
export const TextKind = {
  /** SH, LO, UC, PN…: several values separated by '\'. */
  MultiValued: 'multi-valued',
  /** PN: '^' and '=' are delimiters as well. */
  PersonName: 'person-name',
  /** ST, LT, UT: one value; '\' is an ordinary character. */
  Single: 'single',
} as const;
export type TextKind = (typeof TextKind)[keyof typeof TextKind];

export interface DecodedText {
  readonly text: string;
  /** True when some bytes could not be decoded (they are U+FFFD in `text`) or a term is unknown. */
  readonly lossy: boolean;
}

/** The 96 characters 0xA0–0xFF of a single-byte WHATWG decoder (each byte decodes on its own). */
const grTables = new Map<string, string[]>();
function grTable(label: string): string[] {
  let t = grTables.get(label);
  if (!t) {
    const d = new TextDecoder(label, { fatal: false });
    t = Array.from({ length: 96 }, (_, k) => d.decode(Uint8Array.of(0xa0 + k)));
    grTables.set(label, t);
  }
  return t;
}

const decoders = new Map<string, TextDecoder>();
function decoder(label: string): TextDecoder {
  let d = decoders.get(label);
  if (!d) {
    d = new TextDecoder(label, { fatal: false });
    decoders.set(label, d);
  }
  return d;
}

/** The terms of a Specific Character Set value: trimmed; backslash-separated in the raw form. */
export function characterSetTerms(value: unknown): string[] {
  if (value === undefined || value === null) return [];
  const list = Array.isArray(value) ? value.map(String) : String(value).split('\\');
  return list.map((t) => t.trim());
}

function isAscii(bytes: Uint8Array): boolean {
  for (const b of bytes) if (b >= 0x80 || b === 0x1b) return false;
  return true;
}

/**
 * Decode text bytes under the given Specific Character Set terms (raw values, value 1 first).
 * `kind` says which delimiters reset the ISO 2022 state. An empty list is the default repertoire.
 */
export function decodeText(bytes: Uint8Array, terms: readonly string[], kind: TextKind): DecodedText {
  const list = terms.length === 0 ? [''] : terms;
  const unknown = list.some((t) => !isCharacterSetTerm(t));
  const first = list[0] ?? '';
  // ISO_IR 192, GB18030 and GBK take no code extensions (PS3.3 C.12.1.1.2): a file that lists more
  // terms after one of them is decoded with it alone (lenient; the extra terms are meaningless).
  const noExtensions =
    first === CharacterSetTerm.Utf8 || first === CharacterSetTerm.Gb18030 || first === CharacterSetTerm.Gbk;
  const iso2022 = !noExtensions && (list.length > 1 || first.startsWith('ISO 2022'));
  if (!iso2022) {
    const r = decodeSingle(bytes, first, kind);
    return { text: r.text, lossy: r.lossy || (unknown && !isAscii(bytes)) };
  }
  const r = decodeIso2022(bytes, list, kind);
  return { text: r.text, lossy: r.lossy || (unknown && !isAscii(bytes)) };
}

function decodeSingle(bytes: Uint8Array, term: string, kind: TextKind): DecodedText {
  const how = SINGLE[term];
  if (how === 'utf-8' || how === 'gb18030') {
    const text = decoder(how).decode(bytes);
    // The UTF-8 / GB18030 decoders emit U+FFFD for malformed input only.
    return { text, lossy: text.includes('\ufffd') && !bytesContainReplacement(bytes, how) };
  }
  if (how === 'latin1') {
    let text = '';
    for (const b of bytes) text += String.fromCharCode(b);
    return { text, lossy: false };
  }
  if (how === 'jisx0201') {
    // 0x5C is YEN SIGN in JIS X 0201 Romaji, but still the value delimiter of multi-valued VRs.
    return decodeRun(bytes, 0, bytes.length, { kind: 'romaji' }, { kind: 'katakana' }, kind !== TextKind.Single);
  }
  if (how !== undefined) return decodeRun(bytes, 0, bytes.length, { kind: 'ascii' }, how);
  // Default repertoire (ISO-IR 6) or an unknown term: ASCII only; anything else cannot be trusted.
  return decodeRun(bytes, 0, bytes.length, { kind: 'ascii' }, undefined);
}

/** Did the source itself encode U+FFFD (then a U+FFFD in the output is not a decoding failure)? */
function bytesContainReplacement(bytes: Uint8Array, how: 'utf-8' | 'gb18030'): boolean {
  if (how === 'gb18030') return false;
  for (let i = 0; i + 2 < bytes.length; i++) {
    if (bytes[i] === 0xef && bytes[i + 1] === 0xbf && bytes[i + 2] === 0xbd) return true;
  }
  return false;
}

/**
 * ISO 2022 decoding (PS3.5 §6.1.2.5): value 1 gives the initial G0/G1 designations; escape sequences
 * of the listed terms switch G0 or G1; CR, LF, FF, TAB, '\' (multi-valued VRs) and '^', '=' (PN)
 * restore the initial designations (PS3.5 §6.1.2.5.3: the encoder must switch back before them).
 * Escape sequences of the other defined sets are honoured even when (0008,0005) does not list them
 * (liberal in what we read); unknown escape sequences become U+FFFD.
 */
function decodeIso2022(bytes: Uint8Array, terms: readonly string[], kind: TextKind): DecodedText {
  const value1 = terms[0] === '' ? 'ISO 2022 IR 6' : (terms[0] ?? 'ISO 2022 IR 6');
  // Value 1 may be a term without code extensions (ISO_IR 100 …): its repertoire is then G1.
  const v1Elements = ISO2022_ELEMENTS[value1] ?? ISO2022_ELEMENTS[value1.replace('ISO_IR ', 'ISO 2022 IR ')] ?? [ASCII];
  const initialG0 = (v1Elements.find((e) => e.g === 0) ?? ASCII).rep;
  let initialG1 = v1Elements.find((e) => e.g === 1)?.rep;
  // Lenient: files that list one two-byte GR set (IR 149, IR 58) often omit its escape sequence.
  if (initialG1 === undefined) {
    const g1s = terms.flatMap((t) => (ISO2022_ELEMENTS[t] ?? []).filter((e) => e.g === 1 && e.rep.kind === 'dbcs'));
    if (g1s.length === 1) initialG1 = g1s[0]?.rep;
  }
  const all = Object.values(ISO2022_ELEMENTS).flat();
  let g0: Repertoire = initialG0;
  let g1: Repertoire | undefined = initialG1;
  let out = '';
  let lossy = false;
  let i = 0;
  const isDelimiter = (b: number): boolean =>
    b === 0x0d ||
    b === 0x0a ||
    b === 0x0c ||
    b === 0x09 ||
    (b === 0x5c && kind !== TextKind.Single) ||
    ((b === 0x5e || b === 0x3d) && kind === TextKind.PersonName);
  while (i < bytes.length) {
    if (bytes[i] === 0x1b) {
      const el = all.find((e) => matchesAt(bytes, i, e.escape));
      if (el === undefined) {
        out += '\ufffd';
        lossy = true;
        i++;
        continue;
      }
      if (el.g === 0) g0 = el.rep;
      else g1 = el.rep;
      i += el.escape.length;
      continue;
    }
    // A run up to the next ESC or delimiter, decoded with the current designations.
    let end = i;
    const twoByteG0 = g0.kind === 'dbcs';
    while (end < bytes.length && bytes[end] !== 0x1b) {
      const b = bytes[end] as number;
      if (!twoByteG0 && isDelimiter(b)) break;
      end++;
    }
    if (end > i) {
      const r = decodeRun(bytes, i, end, g0, g1);
      out += r.text;
      lossy ||= r.lossy;
      i = end;
    }
    if (i < bytes.length && bytes[i] !== 0x1b) {
      // A delimiter in a single-byte G0: copy it and restore the initial designations.
      out += String.fromCharCode(bytes[i] as number);
      g0 = initialG0;
      g1 = initialG1;
      i++;
    }
  }
  return { text: out, lossy };
}

function matchesAt(bytes: Uint8Array, at: number, seq: string): boolean {
  if (at + seq.length > bytes.length) return false;
  for (let k = 0; k < seq.length; k++) if (bytes[at + k] !== seq.charCodeAt(k)) return false;
  return true;
}

/** Decode bytes [from, to) with G0 invoked in GL (0x00–0x7F) and G1 in GR (0x80–0xFF). */
function decodeRun(
  bytes: Uint8Array,
  from: number,
  to: number,
  g0: Repertoire,
  g1: Repertoire | undefined,
  /** Keep 0x5C as '\' in Romaji (it delimits values); the ISO 2022 path splits at delimiters before. */
  backslashDelimits = false,
): DecodedText {
  let out = '';
  let lossy = false;
  let i = from;
  while (i < to) {
    const b = bytes[i] as number;
    if (b < 0x80) {
      if (g0.kind === 'dbcs') {
        // Two GL bytes per character; controls and space stay single bytes.
        const b2 = bytes[i + 1];
        if (b > 0x20 && b < 0x7f && b2 !== undefined && i + 1 < to && b2 > 0x20 && b2 < 0x7f) {
          const r = decodeDbcs(g0.form, b, b2);
          out += r;
          lossy ||= r === '\ufffd';
          i += 2;
          continue;
        }
        out += String.fromCharCode(b);
        i++;
        continue;
      }
      if (g0.kind === 'romaji' && b === 0x5c && !backslashDelimits) out += '\u00a5';
      else if (g0.kind === 'romaji' && b === 0x7e) out += '\u203e';
      else out += String.fromCharCode(b);
      i++;
      continue;
    }
    // GR byte.
    if (g1 === undefined) {
      out += '\ufffd';
      lossy = true;
      i++;
      continue;
    }
    if (g1.kind === 'dbcs') {
      const b2 = bytes[i + 1];
      if (b >= 0xa1 && b <= 0xfe && b2 !== undefined && i + 1 < to && b2 >= 0xa1 && b2 <= 0xfe) {
        const r = decodeDbcs(g1.form, b & 0x7f, b2 & 0x7f);
        out += r;
        lossy ||= r === '\ufffd';
        i += 2;
        continue;
      }
      out += '\ufffd';
      lossy = true;
      i++;
      continue;
    }
    if (g1.kind === 'katakana') {
      if (b >= 0xa1 && b <= 0xdf) out += String.fromCharCode(0xff61 + (b - 0xa1));
      else {
        out += '\ufffd';
        lossy = true;
      }
      i++;
      continue;
    }
    if (g1.kind === 'gr96') {
      // 0x80–0x9F are C1 controls in every ISO 8859 part; the WHATWG decoders map them differently.
      if (b < 0xa0) {
        out += String.fromCharCode(b);
      } else {
        const ch = grTable(g1.label)[b - 0xa0] ?? '\ufffd';
        out += ch;
        lossy ||= ch === '\ufffd';
      }
      i++;
      continue;
    }
    out += '\ufffd';
    lossy = true;
    i++;
  }
  return { text: out, lossy };
}

/** One 94×94 character given as two 7-bit bytes (0x21–0x7E each). */
function decodeDbcs(form: 'euc-jp' | 'euc-jp-0212' | 'euc-kr' | 'euc-cn', b1: number, b2: number): string {
  const hi = b1 | 0x80;
  const lo = b2 | 0x80;
  switch (form) {
    case 'euc-jp':
      return decoder('euc-jp').decode(Uint8Array.of(hi, lo));
    case 'euc-jp-0212':
      // EUC-JP code set 3 (SS3 0x8F) is JIS X 0212 (WHATWG index jis0212).
      return decoder('euc-jp').decode(Uint8Array.of(0x8f, hi, lo));
    case 'euc-kr':
      return decoder('euc-kr').decode(Uint8Array.of(hi, lo));
    case 'euc-cn':
      return decoder('gb18030').decode(Uint8Array.of(hi, lo));
  }
}
