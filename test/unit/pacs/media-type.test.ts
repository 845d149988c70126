import {
  formatMediaType,
  multipartRelatedContentType,
  parseMediaType,
  wadoAcceptHeader,
} from '../../../src/pacs/media-type.js';

describe('media types (RFC 7231 §3.1.1.1, PS3.18 §8.7)', () => {
  test('quotes values with tspecials, leaves tokens bare', () => {
    expect(multipartRelatedContentType('abc123')).toBe('multipart/related; type="application/dicom"; boundary=abc123');
    expect(formatMediaType('text/plain', { x: 'a "b" \\c' })).toBe('text/plain; x="a \\"b\\" \\\\c"');
  });
  test('parses quoted and bare parameters, case-insensitive names, boundary case preserved', () => {
    const mt = parseMediaType('Multipart/Related ; TYPE="application/dicom";Boundary=AbC; x="q\\"uote"');
    expect(mt.essence).toBe('multipart/related');
    expect(mt.params).toEqual({ type: 'application/dicom', boundary: 'AbC', x: 'q"uote' });
    expect(parseMediaType(formatMediaType('a/b', { p: 'x;y=z' })).params.p).toBe('x;y=z');
  });
  test('rejects malformed media types with a typed error', () => {
    for (const bad of ['', 'multipart', 'a/b; p', 'a/b; p="open', 'a/b x']) {
      expect(() => parseMediaType(bad)).toThrow(expect.objectContaining({ code: 'request-invalid' }));
    }
  });
  test('WADO-RS Accept: transfer-syntax is a separate, optional parameter', () => {
    expect(wadoAcceptHeader()).toBe('multipart/related; type="application/dicom"');
    expect(wadoAcceptHeader({ transferSyntax: '*' })).toBe(
      'multipart/related; type="application/dicom"; transfer-syntax=*',
    );
    expect(wadoAcceptHeader({ transferSyntax: '1.2.840.10008.1.2.1' })).toBe(
      'multipart/related; type="application/dicom"; transfer-syntax=1.2.840.10008.1.2.1',
    );
  });
});
