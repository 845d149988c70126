import { spawnSync } from 'node:child_process';
import path from 'node:path';
import {
  type AuditMessageEvent,
  buildAuditMessage,
  escapeXmlAttribute,
} from '../../../src/audit/atna/audit-message.js';
import { AUDIT_EVENTS, type AuditEventKind, EventOutcome } from '../../../src/audit/audit-codes.js';

/** The normative PS3.15 A.5.1.1 schema (its RELAX NG Compact text, converted to XML syntax by trang). */
const SCHEMA = path.join(__dirname, '..', '..', 'fixtures', 'atna', 'dicom-audit-message.rng');
const hasXmllint = spawnSync('xmllint', ['--version']).status === 0;
const withXmllint = hasXmllint ? it : it.skip;

function xmllint(args: string[], input: string): { status: number | null; out: string; err: string } {
  const r = spawnSync('xmllint', [...args, '-'], { input, encoding: 'utf8' });
  return { status: r.status, out: r.stdout, err: r.stderr };
}

function event(kind: AuditEventKind, over: Partial<AuditMessageEvent> = {}): AuditMessageEvent {
  const def = AUDIT_EVENTS[kind];
  return {
    id: 7,
    occurredAt: new Date('2026-12-03T08:00:00.123Z'),
    kind,
    eventId: def.eventId.code,
    eventTypeCode: def.eventTypeCode?.code ?? null,
    actionCode: def.action,
    outcome: EventOutcome.Success,
    actor: 'STORESCU',
    source: '10.1.2.3',
    destination: null,
    patientId: 'PAT-1',
    studyInstanceUid: '1.2.3.4',
    sopInstanceUids: ['1.2.3.4.5'],
    ...over,
  };
}

const OPTS = { auditSourceId: 'radscribe-gw-1' };
const HOSTILE = `a&b<c>"d"'e'\u0001\u0000\tf\ng\r\ud800 é 中`;

describe('DICOM audit message (PS3.15 A.5.1)', () => {
  it('escapes the five XML specials, TAB/LF/CR, and replaces what XML 1.0 cannot carry', () => {
    expect(escapeXmlAttribute(HOSTILE)).toBe(
      'a&amp;b&lt;c&gt;&quot;d&quot;&apos;e&apos;\ufffd\ufffd&#9;f&#10;g&#13;\ufffd é 中',
    );
  });

  it('carries the event codes, action, time and outcome of the row', () => {
    const xml = buildAuditMessage(event('instance-received', { outcome: EventOutcome.SeriousFailure }), OPTS);
    expect(xml).toContain(
      '<EventIdentification EventActionCode="C" EventDateTime="2026-12-03T08:00:00.123Z" EventOutcomeIndicator="8">' +
        '<EventID csd-code="110104" codeSystemName="DCM" originalText="DICOM Instances Transferred"/></EventIdentification>',
    );
    expect(xml).toContain(
      '<ActiveParticipant UserID="STORESCU" UserIsRequestor="true" NetworkAccessPointID="10.1.2.3" NetworkAccessPointTypeCode="2">',
    );
    expect(xml).toContain('<AuditSourceIdentification AuditSourceID="radscribe-gw-1">');
    expect(xml).toContain(
      '<ParticipantObjectIdentification ParticipantObjectID="1.2.3.4" ParticipantObjectTypeCode="2" ParticipantObjectTypeCodeRole="3">' +
        '<ParticipantObjectIDTypeCode csd-code="110180" codeSystemName="DCM" originalText="Study Instance UID"/>' +
        '<ParticipantObjectName></ParticipantObjectName></ParticipantObjectIdentification>',
    );
    const types = buildAuditMessage(event('application-start', { actor: 'radscribe', source: null }), OPTS);
    expect(types).toContain('<EventTypeCode csd-code="110120" codeSystemName="DCM" originalText="Application Start"/>');
    expect(types).toContain(
      '<ActiveParticipant UserID="radscribe" UserIsRequestor="true"><RoleIDCode csd-code="110150"',
    );
  });

  it("lists the study's SOP instances under their SOP Classes in a ParticipantObjectDescription; unknown class last, without UID", () => {
    const xml = buildAuditMessage(
      event('instance-received', {
        sopInstanceUids: ['1.2.3.4.5', '1.2.3.4.6', '1.2.3.4.7', '1.2.3.4.8'],
        sopInstances: [
          { sopInstanceUid: '1.2.3.4.5', sopClassUid: '1.2.840.10008.5.1.4.1.1.2' },
          { sopInstanceUid: '1.2.3.4.6', sopClassUid: '1.2.840.10008.5.1.4.1.1.88.33' },
          { sopInstanceUid: '1.2.3.4.7', sopClassUid: '1.2.840.10008.5.1.4.1.1.2' },
          { sopInstanceUid: '1.2.3.4.8', sopClassUid: null },
        ],
      }),
      OPTS,
    );
    expect(xml).toContain(
      '<ParticipantObjectIDTypeCode csd-code="110180" codeSystemName="DCM" originalText="Study Instance UID"/>' +
        '<ParticipantObjectName></ParticipantObjectName><ParticipantObjectDescription>' +
        '<SOPClass UID="1.2.840.10008.5.1.4.1.1.2" NumberOfInstances="2"><Instance UID="1.2.3.4.5"/><Instance UID="1.2.3.4.7"/></SOPClass>' +
        '<SOPClass UID="1.2.840.10008.5.1.4.1.1.88.33" NumberOfInstances="1"><Instance UID="1.2.3.4.6"/></SOPClass>' +
        '<SOPClass NumberOfInstances="1"><Instance UID="1.2.3.4.8"/></SOPClass>' +
        '</ParticipantObjectDescription></ParticipantObjectIdentification>',
    );
  });

  withXmllint('the normative schema refuses what the subset it replaced let through', () => {
    // The two rules the hand-made subset got wrong: a participant object needs a name or a query,
    // and SOPClass lives in ParticipantObjectDescription. The schema must catch both.
    const xml = buildAuditMessage(
      event('instance-received', {
        sopInstances: [{ sopInstanceUid: '1.2.3.4.5', sopClassUid: '1.2.840.10008.5.1.4.1.1.2' }],
      }),
      OPTS,
    );
    expect(xmllint(['--noout', '--relaxng', SCHEMA], xml).status).toBe(0);
    const noName = xml.replaceAll('<ParticipantObjectName></ParticipantObjectName>', '');
    expect(xmllint(['--noout', '--relaxng', SCHEMA], noName).err).toMatch(/Expecting an element ParticipantObjectName/);
    const bareSopClass = xml.replace(/<\/?ParticipantObjectDescription>/g, '');
    expect(xmllint(['--noout', '--relaxng', SCHEMA], bareSopClass).status).not.toBe(0);
  });

  it('Audit Log Used names the audit log as its participant object (PS3.15 A.5.3.2)', () => {
    const xml = buildAuditMessage(event('audit-query', { patientId: null, studyInstanceUid: null }), OPTS);
    expect(xml).toContain(
      '<ParticipantObjectIdentification ParticipantObjectID="radscribe://radscribe-gw-1/audit_events" ParticipantObjectTypeCode="2" ParticipantObjectTypeCodeRole="13">' +
        '<ParticipantObjectIDTypeCode csd-code="12" codeSystemName="RFC-3881" originalText="URI"/>' +
        '<ParticipantObjectName>Security Audit Log</ParticipantObjectName></ParticipantObjectIdentification>',
    );
    expect(buildAuditMessage(event('remote-query'), OPTS)).not.toContain('Security Audit Log');
  });

  it('names the destination with role 110152 and a host name as type 1', () => {
    const xml = buildAuditMessage(
      event('sr-exported', { actor: 'radscribe', source: null, destination: 'pacs.example.org:104' }),
      OPTS,
    );
    expect(xml).toContain(
      '<ActiveParticipant UserID="pacs.example.org:104" UserIsRequestor="false" NetworkAccessPointID="pacs.example.org" NetworkAccessPointTypeCode="1"><RoleIDCode csd-code="110152"',
    );
  });

  withXmllint('is valid against the normative A.5.1 schema for every event kind and outcome', () => {
    for (const kind of Object.keys(AUDIT_EVENTS) as AuditEventKind[]) {
      for (const outcome of Object.values(EventOutcome)) {
        for (const over of [
          {},
          { actor: null, source: null, patientId: null, studyInstanceUid: null },
          { destination: '[::1]:11112' },
          { sopInstances: [{ sopInstanceUid: '1.2.3.4.5', sopClassUid: '1.2.840.10008.5.1.4.1.1.88.33' }] },
          { sopInstances: [{ sopInstanceUid: '1.2.3.4.5', sopClassUid: null }], actor: 'radscribe' },
        ]) {
          const xml = buildAuditMessage(event(kind, { outcome, ...over }), OPTS);
          const r = xmllint(['--noout', '--relaxng', SCHEMA], xml);
          expect({ kind, outcome, err: r.status === 0 ? '' : r.err }).toEqual({ kind, outcome, err: '' });
        }
      }
    }
  });

  withXmllint('hostile values stay attribute text: well-formed, valid, and read back as written', () => {
    const xml = buildAuditMessage(event('user-authentication', { actor: HOSTILE, patientId: HOSTILE }), {
      auditSourceId: HOSTILE,
    });
    expect(xmllint(['--noout', '--relaxng', SCHEMA], xml).status).toBe(0);
    const r = xmllint(['--xpath', 'string(/AuditMessage/ActiveParticipant[1]/@UserID)'], xml);
    expect(r.status).toBe(0);
    expect(r.out.replace(/\n$/, '')).toBe(`a&b<c>"d"'e'\ufffd\ufffd\tf\ng\r\ufffd é 中`);
    expect(xml.match(/<AuditMessage>/g)).toHaveLength(1);
    expect(xml).not.toMatch(/<script|<c>/);
  });
});
