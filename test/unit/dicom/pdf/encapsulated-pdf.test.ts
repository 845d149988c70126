import { renderDraftPdf } from '../../../../src/dicom/pdf/draft-pdf.js';
import { buildEncapsulatedPdf, draftPdfBlocks } from '../../../../src/dicom/pdf/encapsulated-pdf.js';
import { loadPdfFonts } from '../../../../src/dicom/pdf/fonts.js';
import { buildDraftSr } from '../../../../src/dicom/sr/draft-sr.js';
import { RadScribeError, SrValidationError } from '../../../../src/errors.js';
import { FIXED_NOW, paramsFor, sourceHeader } from '../sr/sr-fixtures.js';

const sr = buildDraftSr(paramsFor([sourceHeader('CT_small.dcm')], ['Straße 日本語']));

describe('PDF companion: arguments', () => {
  it('lists disclaimer, flags, algorithm and each finding, in reading order', () => {
    const blocks = draftPdfBlocks(sr);
    expect(blocks[0]).toEqual({ kind: 'warning', text: sr.disclaimer });
    expect(blocks).toContainEqual({ kind: 'paragraph', text: 'Straße 日本語' });
    expect(blocks).toContainEqual({ kind: 'field', label: 'Device UID', value: sr.algorithm.deviceUid });
  });
  it('rejects a missing sr, a bad date and an empty font list, naming them', async () => {
    await expect(buildEncapsulatedPdf({ sr: undefined as never, fonts: [] })).rejects.toThrow('sr must be');
    await expect(buildEncapsulatedPdf({ sr, fonts: [], now: new Date('x') })).rejects.toThrow('now must be');
    await expect(buildEncapsulatedPdf({ sr, fonts: [] })).rejects.toThrow(SrValidationError);
    await expect(
      renderDraftPdf({
        title: 't',
        blocks: [],
        fonts: [{ name: 'junk.ttf', bytes: new Uint8Array(8) }],
        now: FIXED_NOW,
      }),
    ).rejects.toThrow('font junk.ttf cannot be embedded');
  });
  it('loadPdfFonts fails with config-invalid when no font file exists', () => {
    expect(() => loadPdfFonts(['/nonexistent/font.ttf'])).toThrow(RadScribeError);
    expect(() => loadPdfFonts(['/nonexistent/font.ttf'])).toThrow('no Unicode font found');
  });
});
