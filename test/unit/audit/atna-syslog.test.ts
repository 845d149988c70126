import {
  formatSyslogMessage,
  frameOctetCounted,
  IHE_AUDIT_MSGID,
  SyslogSeverity,
  severityOf,
} from '../../../src/audit/atna/syslog-tls.js';

describe('RFC 5424 message and RFC 5425 framing', () => {
  const xml = '<AuditMessage a="é"/>';
  const msg = formatSyslogMessage(xml, {
    timestamp: new Date('2026-12-03T08:00:00.123Z'),
    hostname: 'gw 1',
    appName: 'radscribe',
    procId: '42',
    severity: severityOf(8),
  });

  it('has PRI authpriv×8+severity, version 1, the IHE MSGID, no SD, and a UTF-8 BOM before the XML', () => {
    const header = '<83>1 2026-12-03T08:00:00.123Z gw_1 radscribe 42 IHE+RFC-3881 - ';
    expect(IHE_AUDIT_MSGID).toBe('IHE+RFC-3881');
    expect(msg.subarray(0, header.length).toString('ascii')).toBe(header);
    expect([...msg.subarray(header.length, header.length + 3)]).toEqual([0xef, 0xbb, 0xbf]);
    expect(msg.subarray(header.length + 3).toString('utf8')).toBe(xml);
  });

  it('maps outcomes 0/4/8/12 to notice/warning/error/critical', () => {
    expect([0, 4, 8, 12].map(severityOf)).toEqual([
      SyslogSeverity.Notice,
      SyslogSeverity.Warning,
      SyslogSeverity.Error,
      SyslogSeverity.Critical,
    ]);
  });

  it('frames with the length in octets, not characters', () => {
    const frame = frameOctetCounted(msg);
    const sp = frame.indexOf(0x20);
    expect(Number(frame.subarray(0, sp).toString('ascii'))).toBe(msg.length);
    expect(msg.length).toBeGreaterThan(msg.toString('utf8').length);
    expect(frame.subarray(sp + 1).equals(msg)).toBe(true);
  });
});
