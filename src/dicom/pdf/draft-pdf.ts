import fontkit from '@pdf-lib/fontkit';
import { PDFDocument, type PDFFont, type PDFPage, rgb } from 'pdf-lib';
import { SrValidationError } from '../../errors.js';
import type { PdfFont } from './fonts.js';

/**
 * A plain, paginated PDF of the draft (title, labelled lines, paragraphs) with embedded, subset
 * Unicode fonts. Pure: bytes in, bytes out (STYLE §2.1).
 */

/** One block of the document. */
export type PdfBlock =
  | { readonly kind: 'heading'; readonly text: string }
  | { readonly kind: 'warning'; readonly text: string }
  | { readonly kind: 'field'; readonly label: string; readonly value: string }
  | { readonly kind: 'paragraph'; readonly text: string };

export interface DraftPdfParams {
  readonly title: string;
  readonly blocks: readonly PdfBlock[];
  readonly fonts: readonly PdfFont[];
  /** Creation date written into the PDF Info dictionary. */
  readonly now: Date;
}

/** A4 in points (ISO 216), margins and type sizes. */
const PAGE_W = 595.28;
const PAGE_H = 841.89;
const MARGIN = 50;
const BODY = 10;
const HEADING = 13;
const LEADING = 1.35;
/** Drawn for characters no embedded font covers (e.g. emoji). */
const MISSING = '?';

interface Run {
  readonly font: number;
  readonly text: string;
}

class Typesetter {
  private page: PDFPage;
  private y: number;
  private readonly widthCache = new Map<string, number>();

  constructor(
    private readonly doc: PDFDocument,
    private readonly fonts: readonly PDFFont[],
    private readonly charsets: readonly { has(cp: number): boolean }[],
  ) {
    this.page = doc.addPage([PAGE_W, PAGE_H]);
    this.y = PAGE_H - MARGIN;
  }

  /** Index of the first font with a glyph for `cp`, or -1. */
  private fontFor(cp: number): number {
    return this.charsets.findIndex((s) => s.has(cp));
  }

  /** Split into runs of one font each; uncovered characters become MISSING in font 0. */
  private runs(text: string): Run[] {
    const out: Run[] = [];
    for (const ch of text) {
      const cp = ch.codePointAt(0) ?? 0x3f;
      let f = this.fontFor(cp);
      let c = ch;
      if (f < 0) {
        f = 0;
        c = MISSING;
      }
      const last = out[out.length - 1];
      if (last && last.font === f) out[out.length - 1] = { font: f, text: last.text + c };
      else out.push({ font: f, text: c });
    }
    return out;
  }

  private charWidth(font: number, ch: string, size: number): number {
    const key = `${font}:${size}:${ch}`;
    let w = this.widthCache.get(key);
    if (w === undefined) {
      w = (this.fonts[font] as PDFFont).widthOfTextAtSize(ch, size);
      this.widthCache.set(key, w);
    }
    return w;
  }

  /** Greedy line breaking: break at the last space that fits, else (CJK, long tokens) at any character. */
  private wrap(text: string, size: number, width: number): Run[][] {
    const chars: Array<{ font: number; ch: string; w: number }> = [];
    for (const r of this.runs(text))
      for (const ch of r.text) chars.push({ font: r.font, ch, w: this.charWidth(r.font, ch, size) });
    const lines: Run[][] = [];
    let start = 0;
    while (start < chars.length) {
      let end = start;
      let acc = 0;
      let lastSpace = -1;
      while (end < chars.length && acc + (chars[end]?.w ?? 0) <= width) {
        if (chars[end]?.ch === ' ') lastSpace = end;
        acc += chars[end]?.w ?? 0;
        end++;
      }
      if (end < chars.length && lastSpace > start) end = lastSpace + 1;
      if (end === start) end = start + 1; // a single glyph wider than the line
      const line: Run[] = [];
      for (const c of chars.slice(start, end)) {
        const last = line[line.length - 1];
        if (last && last.font === c.font) line[line.length - 1] = { font: c.font, text: last.text + c.ch };
        else line.push({ font: c.font, text: c.ch });
      }
      lines.push(line);
      start = end;
      while (start < chars.length && chars[start]?.ch === ' ') start++;
    }
    return lines;
  }

  /** Set text (several paragraphs separated by line breaks) at the cursor, adding pages as needed. */
  text(text: string, opts: { size?: number; color?: [number, number, number]; indent?: number; after?: number } = {}) {
    const size = opts.size ?? BODY;
    const indent = opts.indent ?? 0;
    const color = opts.color ?? [0, 0, 0];
    const lineHeight = size * LEADING;
    const paragraphs = text
      .replace(/\r\n?/g, '\n')
      .replace(/[\t\f]/g, ' ')
      .split('\n');
    for (const para of paragraphs) {
      const lines = para.length === 0 ? [[]] : this.wrap(para, size, PAGE_W - 2 * MARGIN - indent);
      for (const line of lines) {
        if (this.y - lineHeight < MARGIN) {
          this.page = this.doc.addPage([PAGE_W, PAGE_H]);
          this.y = PAGE_H - MARGIN;
        }
        this.y -= lineHeight;
        let x = MARGIN + indent;
        for (const run of line) {
          const font = this.fonts[run.font] as PDFFont;
          this.page.drawText(run.text, { x, y: this.y, size, font, color: rgb(...color) });
          x += font.widthOfTextAtSize(run.text, size);
        }
      }
    }
    this.y -= opts.after ?? size * 0.5;
  }
}

/** Render the blocks to PDF bytes. Throws SrValidationError when no font is given or a font cannot be read. */
export async function renderDraftPdf(params: DraftPdfParams): Promise<Uint8Array> {
  if (!Array.isArray(params.fonts) || params.fonts.length === 0) {
    throw new SrValidationError('renderDraftPdf: fonts must be a non-empty array');
  }
  const doc = await PDFDocument.create({ updateMetadata: false });
  doc.registerFontkit(fontkit);
  const fonts: PDFFont[] = [];
  for (const f of params.fonts) {
    try {
      fonts.push(await doc.embedFont(f.bytes, { subset: true }));
    } catch (err) {
      throw new SrValidationError(`renderDraftPdf: font ${f.name} cannot be embedded: ${(err as Error).message}`);
    }
  }
  // Coverage from the font's own cmap: pdf-lib's getCharacterSet() also lists code points that map to
  // .notdef (an empty box when drawn), e.g. emoji in DejaVu Sans.
  const charsets = params.fonts.map((f) => {
    const face = fontkit.create(f.bytes);
    return { has: (cp: number) => face.hasGlyphForCodePoint(cp) };
  });
  doc.setTitle(params.title, { showInWindowTitleBar: true });
  doc.setProducer('RadScribe');
  doc.setCreator('RadScribe');
  doc.setCreationDate(params.now);
  doc.setModificationDate(params.now);

  const t = new Typesetter(doc, fonts, charsets);
  t.text(params.title, { size: HEADING, color: [0.7, 0, 0], after: 8 });
  for (const b of params.blocks) {
    switch (b.kind) {
      case 'heading':
        t.text(b.text, { size: HEADING - 1, after: 4 });
        break;
      case 'warning':
        t.text(b.text, { color: [0.7, 0, 0], after: 8 });
        break;
      case 'field':
        t.text(`${b.label}: ${b.value}`, { after: 2 });
        break;
      case 'paragraph':
        t.text(b.text, { indent: 12, after: 8 });
        break;
    }
  }
  return doc.save({ useObjectStreams: false });
}
