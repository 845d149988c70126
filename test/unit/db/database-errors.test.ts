import { endsIdle } from '../../../src/db/pglite-session-gate.js';
import { classifyDatabaseError, DatabaseFailure, DatabaseUnavailableError } from '../../../src/db/pool.js';
import { ErrorCode, errorCodeOf, RadScribeError, toHttpStatus } from '../../../src/errors.js';

/** [REQ-DB-01] [REQ-DB-03] (issue 9) Database failures are classified once, where they happen. */
describe('classifyDatabaseError', () => {
  const sys = (code: string, message = code) => Object.assign(new Error(message), { code });

  it.each([
    ['ECONNREFUSED', DatabaseFailure.Unreachable],
    ['ENOENT', DatabaseFailure.Unreachable],
    ['ENOTFOUND', DatabaseFailure.Unreachable],
    ['ECONNRESET', DatabaseFailure.ConnectionLost],
    ['EPIPE', DatabaseFailure.ConnectionLost],
  ])('socket error %s → database-unavailable (%s)', (code, reason) => {
    const err = classifyDatabaseError(sys(code));
    expect(err).toBeInstanceOf(DatabaseUnavailableError);
    expect((err as DatabaseUnavailableError).reason).toBe(reason);
    expect(errorCodeOf(err)).toBe(ErrorCode.DatabaseUnavailable);
    expect(toHttpStatus(errorCodeOf(err))).toBe(503);
  });

  it.each([
    ['Connection terminated unexpectedly', DatabaseFailure.ConnectionLost],
    ['Connection terminated due to connection timeout', DatabaseFailure.ConnectionLost],
    ['Client has encountered a connection error and is not queryable', DatabaseFailure.ConnectionLost],
    ['Query read timeout', DatabaseFailure.ConnectionLost],
    ['timeout exceeded when trying to connect', DatabaseFailure.CheckoutTimeout],
  ])('node-postgres "%s" → %s', (message, reason) => {
    const err = classifyDatabaseError(new Error(message));
    expect((err as DatabaseUnavailableError).reason).toBe(reason);
  });

  it('a server error (SQLSTATE + severity) passes through for errors.ts to read', () => {
    const server = Object.assign(new Error('duplicate key'), { code: '23505', severity: 'ERROR' });
    expect(classifyDatabaseError(server)).toBe(server);
    const shutdown = Object.assign(new Error('terminating connection due to administrator command'), {
      code: '57P01',
      severity: 'FATAL',
    });
    expect(errorCodeOf(classifyDatabaseError(shutdown))).toBe(ErrorCode.DatabaseUnavailable);
  });

  it('anything else is left alone (a bug stays internal)', () => {
    const bug = new TypeError('x is undefined');
    expect(classifyDatabaseError(bug)).toBe(bug);
    const typed = new RadScribeError(ErrorCode.DicomInvalid, 'bad');
    expect(classifyDatabaseError(typed)).toBe(typed);
  });
});

describe('endsIdle (ReadyForQuery status of the PGlite session)', () => {
  const rfq = (status: string) => [0x5a, 0, 0, 0, 5, status.charCodeAt(0)];

  it('idle releases the session; in transaction or failed transaction keeps it', () => {
    expect(endsIdle(Uint8Array.from([0x43, 0, 0, 0, 4, ...rfq('I')]))).toBe(true);
    expect(endsIdle(Uint8Array.from(rfq('T')))).toBe(false);
    expect(endsIdle(Uint8Array.from(rfq('E')))).toBe(false);
  });

  it('a reply without ReadyForQuery (ParseComplete, mid-cycle) keeps it', () => {
    expect(endsIdle(Uint8Array.from([0x31, 0, 0, 0, 4]))).toBe(false);
    expect(endsIdle(new Uint8Array(0))).toBe(false);
    // Same bytes, wrong length field.
    expect(endsIdle(Uint8Array.from([0x5a, 0, 0, 0, 6, 0x49]))).toBe(false);
  });
});
