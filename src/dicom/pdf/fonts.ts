import { existsSync, readFileSync } from 'node:fs';
import { ErrorCode, RadScribeError } from '../../errors.js';

/**
 * Unicode fonts for the PDF companion, in fallback order: a character is drawn with the first font
 * that has a glyph for it. PDF viewers cannot be relied on to have any font beyond the 14 standard
 * Latin-1 ones, so the fonts are embedded (subset) in the PDF.
 *
 * This is the one file under src/dicom that reads files: it only loads font bytes, once, at startup;
 * the PDF builder itself works on the bytes it is given (STYLE §2.1).
 */
export interface PdfFont {
  /** A label for errors and tests, e.g. the file name. */
  readonly name: string;
  /** TrueType/OpenType bytes. */
  readonly bytes: Uint8Array;
}

/**
 * Default font files (Debian packages): DejaVu Sans (fonts-dejavu-core: Latin, Greek, Cyrillic,
 * symbols) first, then Droid Sans Fallback (fonts-droid-fallback: CJK). Neither has colour emoji;
 * characters no font covers are drawn as "?" (docs/draft-sr.md).
 */
export const DEFAULT_PDF_FONT_FILES: readonly string[] = [
  '/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf',
  '/usr/share/fonts/truetype/droid/DroidSansFallbackFull.ttf',
];

/**
 * Load the fonts that exist among `files` (default {@link DEFAULT_PDF_FONT_FILES}). Throws
 * RadScribeError(config-invalid) when none exists: a PDF companion without a Unicode font would lose text.
 */
export function loadPdfFonts(files: readonly string[] = DEFAULT_PDF_FONT_FILES): PdfFont[] {
  const fonts = files.filter((f) => existsSync(f)).map((f) => ({ name: f, bytes: new Uint8Array(readFileSync(f)) }));
  if (fonts.length === 0) {
    throw new RadScribeError(
      ErrorCode.ConfigInvalid,
      `PDF companion: no Unicode font found (looked for ${files.join(', ')}; install fonts-dejavu-core and fonts-droid-fallback)`,
    );
  }
  return fonts;
}
