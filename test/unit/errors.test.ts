import {
  ConfigError,
  ErrorCode,
  errorCodeOf,
  RadScribeError,
  RETRYABLE_CODES,
  toHttpStatus,
} from '../../src/errors.js';

describe('errors', () => {
  it('classifies once and maps to HTTP only from the code', () => {
    const e = new RadScribeError(ErrorCode.MediaTypeUnsupported, 'x');
    expect(errorCodeOf(e)).toBe('media-type-unsupported');
    expect(toHttpStatus(errorCodeOf(e))).toBe(415);
    expect(toHttpStatus(ErrorCode.StudyMismatch)).toBe(409);
    expect(errorCodeOf(Object.assign(new Error('disk'), { code: 'ENOSPC' }))).toBe(ErrorCode.OutOfResources);
    expect(errorCodeOf(new Error('boom'))).toBe(ErrorCode.Internal);
  });
  it('retries only transient codes', () => {
    expect(RETRYABLE_CODES.has(ErrorCode.PacsUnavailable)).toBe(true);
    expect(RETRYABLE_CODES.has(ErrorCode.DicomInvalid)).toBe(false);
  });
  it('ConfigError reports every problem', () => {
    const e = new ConfigError(['a.b: bad', 'c: missing']);
    expect(e.message).toContain('a.b: bad');
    expect(e.message).toContain('c: missing');
    expect(e.problems).toHaveLength(2);
  });
});
