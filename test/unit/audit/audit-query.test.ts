import {
  AuditQueryError,
  auditEventsCsv,
  buildAuditQuery,
  csvField,
  encodeCursor,
  parseAuditQuery,
} from '../../../src/audit/audit-query.js';
import { type Args, parseArgs } from '../../../src/cli/args.js';
import { queryParametersOf } from '../../../src/cli/audit.js';

describe('parseAuditQuery', () => {
  it('turns parameters into a query; type takes kinds and DCM event IDs', () => {
    expect(
      parseAuditQuery({
        from: '2026-01-01',
        to: '2026-01-02T08:00:00.123456+01:00',
        type: 'audit-query,110113',
        outcome: '8',
        patientId: 'PAT-1',
        limit: '10',
      }),
    ).toEqual({
      from: '2026-01-01T00:00:00Z',
      to: '2026-01-02T08:00:00.123456+01:00',
      kinds: [
        'audit-query',
        'config-change',
        'instance-quarantined',
        'association-rejected',
        'access-refused',
        'security-configuration',
        'audit-retention',
      ],
      outcome: 8,
      patientId: 'PAT-1',
      limit: 10,
      format: 'json',
    });
  });

  it.each([
    [{ from: '2026-13-01' }, 'from'],
    [{ from: '2025-02-29' }, 'from'],
    [{ to: '2026-01-01T23:60:00Z' }, 'to'],
    [{ limit: '1001' }, 'limit'],
    [{ kind: 'audit-query' }, 'kind'],
    [{ outcome: ['0', '8'] }, 'outcome'],
    [{ cursor: Buffer.from('["x","1"]').toString('base64url') }, 'cursor'],
  ])('refuses %j naming %s', (params, field) => {
    expect(() => parseAuditQuery(params)).toThrow(AuditQueryError);
    try {
      parseAuditQuery(params);
    } catch (err) {
      expect((err as AuditQueryError).field).toBe(field);
      expect((err as AuditQueryError).code).toBe('request-invalid');
    }
  });

  it('round-trips a cursor into a row comparison', () => {
    const cursor = encodeCursor({ occurredAt: '2026-01-01T00:00:00.000001Z', id: '42' });
    const q = parseAuditQuery({ cursor, actor: 'AE' });
    expect(q.cursor).toEqual({ occurredAt: '2026-01-01T00:00:00.000001Z', id: '42' });
    const sql = buildAuditQuery(q);
    expect(sql.text).toContain('actor = $1 AND (occurred_at, id) < ($2::timestamptz, $3::bigint)');
    // The table's columns, not the text output column `id` (which sorts '9' above '10' on a tie of occurred_at).
    expect(sql.text).toContain('ORDER BY audit_events.occurred_at DESC, audit_events.id DESC LIMIT $4');
    expect(sql.values).toEqual(['AE', '2026-01-01T00:00:00.000001Z', '42', 101]);
  });
});

describe('CSV', () => {
  it('quotes per RFC 4180 and defuses spreadsheet formulas', () => {
    expect(csvField('a,b')).toBe('"a,b"');
    expect(csvField('say "hi"')).toBe('"say ""hi"""');
    expect(csvField('=HYPERLINK("x")')).toBe(`"'=HYPERLINK(""x"")"`);
    expect(csvField('@SUM')).toBe("'@SUM");
    expect(csvField(null)).toBe('');
    expect(csvField(8)).toBe('8');
    const csv = auditEventsCsv([
      {
        id: 1,
        occurredAt: '2026-01-01T00:00:00.000000Z',
        kind: 'audit-query',
        eventId: '110101',
        eventTypeCode: null,
        actionCode: 'R',
        outcome: 0,
        actor: 'cli:root',
        source: null,
        destination: null,
        patientId: null,
        studyInstanceUid: null,
        sopInstanceUids: ['1.2', '1.3'],
        detail: { a: 1 },
        rowHash: 'ab',
      },
    ]);
    expect(csv.split('\r\n')[1]).toBe(
      '1,2026-01-01T00:00:00.000000Z,audit-query,110101,,R,0,cli:root,,,,,1.2\\1.3,"{""a"":1}",ab',
    );
  });
});

describe('radscribe audit query flags', () => {
  const args = (argv: string[]): Args => parseArgs(['audit', 'query', ...argv]);
  it('maps kebab-case flags to the API parameters and leaves --config out', () => {
    expect(
      queryParametersOf(args(['--patient-id', 'P1', '--study-uid', '1.2', '--config', 'x.yaml', '--format', 'csv'])),
    ).toEqual({
      patientId: 'P1',
      studyUid: '1.2',
      format: 'csv',
    });
  });
  it('passes a flag without a value as empty, so the parser names it', () => {
    expect(() => parseAuditQuery(queryParametersOf(args(['--outcome'])))).toThrow('query parameter outcome:');
  });
});
