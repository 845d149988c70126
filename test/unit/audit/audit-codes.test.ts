import { AUDIT_EVENTS, AuditEventKind, configChangeTypeCode, EventOutcome } from '../../../src/audit/audit-codes.js';

// reference/dicom-sr-and-audit.md §5 mapping, PS3.15 A.5.
describe('audit codes', () => {
  it('every event kind has a DCM event ID and an action code', () => {
    for (const kind of Object.values(AuditEventKind)) {
      const def = AUDIT_EVENTS[kind];
      expect(def.eventId.scheme).toBe('DCM');
      expect(def.eventId.code).toMatch(/^1101\d\d$/);
      expect(['C', 'R', 'U', 'D', 'E']).toContain(def.action);
    }
  });

  it.each([
    ['instance-received', '110104', 'C', undefined],
    ['remote-query', '110112', 'E', undefined],
    ['inference-run', '110103', 'R', undefined],
    ['sr-exported', '110106', 'R', undefined],
    ['audit-query', '110101', 'R', undefined],
    ['application-start', '110100', 'E', '110120'],
    ['application-stop', '110100', 'E', '110121'],
    ['config-change', '110113', 'E', '110131'],
  ] as const)('%s → %s/%s', (kind, id, action, type) => {
    expect(AUDIT_EVENTS[kind].eventId.code).toBe(id);
    expect(AUDIT_EVENTS[kind].action).toBe(action);
    expect(AUDIT_EVENTS[kind].eventTypeCode?.code).toBe(type);
  });

  it('an export also carries Begin Transferring (110102) semantics', () => {
    expect(AUDIT_EVENTS['sr-exported'].alsoImplies?.map((c) => c.code)).toEqual(['110102']);
  });

  it('network config changes are 110128, others 110131', () => {
    expect(configChangeTypeCode('network').code).toBe('110128');
    expect(configChangeTypeCode(undefined).code).toBe('110131');
  });

  it('outcome indicators are the PS3.15 values', () => {
    expect(Object.values(EventOutcome)).toEqual([0, 4, 8, 12]);
  });
});
