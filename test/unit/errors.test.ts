import {
  ConfigError,
  clientMessage,
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
    // [issue 9] A full file system is storage-full: 507 Insufficient Storage (RFC 4918 §11.5), retryable.
    expect(errorCodeOf(Object.assign(new Error('disk'), { code: 'ENOSPC' }))).toBe(ErrorCode.StorageFull);
    expect(errorCodeOf(Object.assign(new Error('quota'), { code: 'EDQUOT' }))).toBe(ErrorCode.StorageFull);
    expect(errorCodeOf(Object.assign(new Error('fds'), { code: 'EMFILE' }))).toBe(ErrorCode.OutOfResources);
    expect(toHttpStatus(ErrorCode.StorageFull)).toBe(507);
    expect(RETRYABLE_CODES.has(ErrorCode.StorageFull)).toBe(true);
    expect(clientMessage(new RadScribeError(ErrorCode.StorageFull, '/var/lib/x: 12 bytes free'))).not.toContain('/var');
    expect(errorCodeOf(new Error('boom'))).toBe(ErrorCode.Internal);
  });
  it('retries only transient codes', () => {
    expect(RETRYABLE_CODES.has(ErrorCode.PacsUnavailable)).toBe(true);
    expect(RETRYABLE_CODES.has(ErrorCode.DicomInvalid)).toBe(false);
    // [issue 11] Other content under our SR's UID at the PACS: resending cannot fix it.
    expect(RETRYABLE_CODES.has(ErrorCode.ExportConflict)).toBe(false);
    expect(toHttpStatus(ErrorCode.ExportConflict)).toBe(409);
    expect(RETRYABLE_CODES.has(ErrorCode.StateConflict)).toBe(false);
    expect(toHttpStatus(ErrorCode.StateConflict)).toBe(409);
  });
  it('ConfigError reports every problem', () => {
    const e = new ConfigError(['a.b: bad', 'c: missing']);
    expect(e.message).toContain('a.b: bad');
    expect(e.message).toContain('c: missing');
    expect(e.problems).toHaveLength(2);
  });
  it('does not guess whose a network error is; reads SQLSTATEs of server errors', () => {
    // ECONNREFUSED from a PACS is not "database unavailable": the caller classifies at origin.
    expect(errorCodeOf(Object.assign(new Error('connect ECONNREFUSED'), { code: 'ECONNREFUSED' }))).toBe(
      ErrorCode.Internal,
    );
    expect(errorCodeOf(Object.assign(new Error('reset'), { code: 'ECONNRESET' }))).toBe(ErrorCode.Internal);
    const pgError = (code: string) => Object.assign(new Error('server said no'), { code, severity: 'FATAL' });
    expect(errorCodeOf(pgError('57P01'))).toBe(ErrorCode.DatabaseUnavailable);
    expect(errorCodeOf(pgError('08006'))).toBe(ErrorCode.DatabaseUnavailable);
    expect(errorCodeOf(pgError('40001'))).toBe(ErrorCode.DatabaseUnavailable);
    expect(errorCodeOf(pgError('53100'))).toBe(ErrorCode.OutOfResources);
    expect(errorCodeOf(pgError('57014'))).toBe(ErrorCode.Timeout);
    expect(errorCodeOf(pgError('42P01'))).toBe(ErrorCode.Internal);
    // A 5-letter system code is not an SQLSTATE: no severity.
    expect(errorCodeOf(Object.assign(new Error('pipe'), { code: 'EPIPE' }))).toBe(ErrorCode.Internal);
  });
  it('gives clients our own text for a 4xx and only a fixed text for a 5xx', () => {
    expect(clientMessage(new RadScribeError(ErrorCode.RequestInvalid, 'query parameter since: bad'))).toBe(
      'query parameter since: bad',
    );
    const leak = 'relation "audit_events" does not exist at /var/lib/radscribe/pglite';
    expect(clientMessage(new RadScribeError(ErrorCode.DatabaseUnavailable, leak))).toBe(
      'the database is unavailable; try again later',
    );
    expect(clientMessage(new Error(leak))).toBe('internal error');
    expect(clientMessage(Object.assign(new Error(leak), { code: '42P01', severity: 'ERROR' }))).toBe('internal error');
  });
});
