import { AUDIT_EVENTS, type AuditCode, AuditEventId, AuditEventTypeCode } from '../audit-codes.js';
import type { AuditEvent, AuditEventFields } from '../audit-log.js';

/**
 * One audit_events row as a DICOM Audit Message (PS3.15 A.5.1, the XML schema of RFC 3881 as
 * profiled by DICOM; IHE ITI-20 "Record Audit Event"). Element order follows the A.5.1 schema:
 * EventIdentification, ActiveParticipant+, AuditSourceIdentification, ParticipantObjectIdentification*,
 * and every message validates against the normative schema (test/fixtures/atna/dicom-audit-message.rnc).
 * Every attribute value is XML-escaped; characters XML 1.0 cannot carry are replaced by U+FFFD.
 */

/** One SOP instance of the event with its SOP Class, when the gateway knows the class. */
export interface AuditSopInstance {
  readonly sopInstanceUid: string;
  readonly sopClassUid: string | null;
}

/**
 * The row fields the message is built from (AuditEvent from audit-log.ts, or a raw row mapped to
 * it), and the SOP Classes of its SOP instances (the exporter looks them up: the row keeps UIDs).
 */
export type AuditMessageEvent = AuditEventFields &
  Pick<AuditEvent, 'occurredAt'> & { readonly sopInstances?: readonly AuditSopInstance[] };

export interface AuditMessageOptions {
  /** PS3.15 A.5.1 AuditSourceIdentification@AuditSourceID: this gateway (host name by default). */
  readonly auditSourceId: string;
  /** The gateway's own UserID when it acts (actor null or 'radscribe'): an AE title or process name. */
  readonly applicationUserId?: string;
  /**
   * PS3.15 A.5.3.2 Audit Log Used: the URI of the audit log read (ParticipantObjectID, ID type
   * RFC-3881 12 "URI"). Default `radscribe://<auditSourceId>/audit_events`: this gateway's trail.
   */
  readonly auditLogUri?: string;
}

/** PS3.15 A.5.1 NetworkAccessPointTypeCode: 1 machine name (DNS), 2 IP address. */
export const NetworkAccessPointType = { MachineName: '1', IpAddress: '2' } as const;

/** RFC 3881 / PS3.15 A.5.1 ParticipantObjectTypeCode and ParticipantObjectTypeCodeRole (subset). */
export const ParticipantObjectType = { Person: '1', SystemObject: '2' } as const;
export const ParticipantObjectRole = { Patient: '1', Report: '3', SecurityResource: '13' } as const;

/** PS3.15 A.5.3.2: the audit log participant object's ID type and name. */
const ID_TYPE_URI = { code: '12', scheme: 'RFC-3881', meaning: 'URI' } as const;
const SECURITY_AUDIT_LOG = 'Security Audit Log';

/** PS3.16 CID 402 Audit Active Participant Role ID. */
const ROLE_SOURCE: AuditCode = { code: '110153', scheme: 'DCM', meaning: 'Source Role ID' };
const ROLE_DESTINATION: AuditCode = { code: '110152', scheme: 'DCM', meaning: 'Destination Role ID' };
const ROLE_APPLICATION: AuditCode = { code: '110150', scheme: 'DCM', meaning: 'Application' };
/** PS3.16 CID 404 Audit Participant Object ID Type Code. */
const ID_TYPE_STUDY: AuditCode = { code: '110180', scheme: 'DCM', meaning: 'Study Instance UID' };

const ALL_CODES: readonly AuditCode[] = [...Object.values(AuditEventId), ...Object.values(AuditEventTypeCode)];

/**
 * Replaces by U+FFFD what XML 1.0 §2.2 Char excludes: C0 controls but TAB/LF/CR, lone surrogates,
 * U+FFFE and U+FFFF.
 */
function xmlChars(s: string): string {
  let out = '';
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c >= 0xd800 && c <= 0xdbff) {
      const next = s.charCodeAt(i + 1);
      if (next >= 0xdc00 && next <= 0xdfff) {
        out += s.slice(i, i + 2);
        i++;
      } else out += '\ufffd';
    } else if ((c < 0x20 && c !== 0x09 && c !== 0x0a && c !== 0x0d) || (c >= 0xdc00 && c <= 0xdfff) || c >= 0xfffe)
      out += '\ufffd';
    else out += s[i];
  }
  return out;
}

/** XML-escapes an attribute value (also TAB/LF/CR, which attribute-value normalisation would eat). */
export function escapeXmlAttribute(s: string): string {
  return xmlChars(s)
    .replace(/&/g, '&amp;')
    .replace(/</g, '&lt;')
    .replace(/>/g, '&gt;')
    .replace(/"/g, '&quot;')
    .replace(/'/g, '&apos;')
    .replace(/\t/g, '&#9;')
    .replace(/\n/g, '&#10;')
    .replace(/\r/g, '&#13;');
}

type Attrs = ReadonlyArray<readonly [string, string | undefined]>;

function el(name: string, attrs: Attrs, children: readonly string[] = []): string {
  const a = attrs
    .filter((x): x is readonly [string, string] => x[1] !== undefined)
    .map(([k, v]) => ` ${k}="${escapeXmlAttribute(v)}"`)
    .join('');
  return children.length === 0 ? `<${name}${a}/>` : `<${name}${a}>${children.join('')}</${name}>`;
}

/** A coded value (PS3.15 A.5.1 "CodedValueType": csd-code, codeSystemName, originalText). */
function coded(name: string, c: AuditCode | { code: string; scheme: string; meaning: string }): string {
  return el(name, [
    ['csd-code', c.code],
    ['codeSystemName', c.scheme],
    ['originalText', c.meaning],
  ]);
}

function codeOf(code: string): AuditCode {
  return ALL_CODES.find((c) => c.code === code) ?? { code, scheme: 'DCM', meaning: code };
}

const IPV4 = /^\d{1,3}(\.\d{1,3}){3}$/;
/** A network address as recorded (`10.0.0.1`, `::1`, `[::1]:4242`, `host:104`) without its port. */
function accessPoint(addr: string): { id: string; type: string } {
  let a = addr.trim();
  const bracket = /^\[([^\]]+)\](?::\d+)?$/.exec(a);
  if (bracket?.[1]) a = bracket[1];
  else if (/^[^:]+:\d+$/.test(a)) a = a.replace(/:\d+$/, '');
  if (a.startsWith('::ffff:') && IPV4.test(a.slice(7))) a = a.slice(7);
  const ip = IPV4.test(a) || (a.includes(':') && /^[0-9a-fA-F:.]+$/.test(a));
  return { id: a, type: ip ? NetworkAccessPointType.IpAddress : NetworkAccessPointType.MachineName };
}

/** PS3.15 A.5.1 EventDateTime: xs:dateTime, UTC with milliseconds. */
function dateTime(d: Date): string {
  return d.toISOString();
}

/**
 * The XML text (no declaration, UTF-8 when encoded) of one event. Participants:
 * - the actor (who asked) as UserIsRequestor="true"; our own actions (actor null or 'radscribe')
 *   carry the application's UserID with role 110150 Application;
 * - `source` as role 110153 Source and `destination` as 110152 Destination, each a network access
 *   point (PS3.15 A.5.3.4/A.5.3.5); the gateway is the other end, so it takes the remaining role;
 * - participant objects: the patient (type 1, role 1, RFC 3881 ID type 2 "Patient Number") and the
 *   study (type 2, role 3, DCM 110180 "Study Instance UID") with its SOP instances grouped by SOP
 *   Class (`<ParticipantObjectDescription><SOPClass UID NumberOfInstances><Instance UID/>…`,
 *   PS3.15 A.5.1; A.5.3 lists them for
 *   Begin Transferring, Instances Transferred, DICOM Instances Accessed and Deleted). Instances
 *   whose class is unknown (refused before it was parsed) go last under a SOPClass without UID:
 *   the normative schema makes SOPClass@UID optional and NumberOfInstances required.
 */
/**
 * PS3.15 A.5.1 SOPClass elements of a study participant object, classes and instances in order,
 * inside one ParticipantObjectDescription (the schema's DICOMObjectDescriptionContents: SOPClass is
 * a child of ParticipantObjectDescription, not of ParticipantObjectIdentification). None when the
 * event names no SOP instances.
 */
function sopClassDescription(instances: readonly AuditSopInstance[]): string[] {
  const byClass = new Map<string, string[]>();
  const unknown: string[] = [];
  for (const i of instances) {
    const list = i.sopClassUid ? (byClass.get(i.sopClassUid) ?? []) : unknown;
    if (!list.includes(i.sopInstanceUid)) list.push(i.sopInstanceUid);
    if (i.sopClassUid) byClass.set(i.sopClassUid, list);
  }
  const groups: [string | undefined, string[]][] = [...byClass];
  if (unknown.length > 0) groups.push([undefined, unknown]);
  if (groups.length === 0) return [];
  const classes = groups.map(([uid, list]) =>
    el(
      'SOPClass',
      [
        ['UID', uid],
        ['NumberOfInstances', String(list.length)],
      ],
      list.map((u) => el('Instance', [['UID', u]])),
    ),
  );
  return [el('ParticipantObjectDescription', [], classes)];
}

/**
 * PS3.15 A.5.1 requires, after ParticipantObjectIDTypeCode, either ParticipantObjectName or
 * ParticipantObjectQuery. RadScribe keeps no patient names or study descriptions in the trail
 * (minimum necessary), so objects without a query carry an empty ParticipantObjectName: the
 * schema's token allows it, and it says "no name recorded" rather than inventing one.
 */
const NO_NAME = '<ParticipantObjectName></ParticipantObjectName>';

export function buildAuditMessage(ev: AuditMessageEvent, opts: AuditMessageOptions): string {
  const def = AUDIT_EVENTS[ev.kind];
  const app = opts.applicationUserId ?? 'radscribe';
  const eventId = def?.eventId.code === ev.eventId ? def.eventId : codeOf(ev.eventId);
  const typeCode = ev.eventTypeCode ? codeOf(ev.eventTypeCode) : undefined;

  const participants: string[] = [];
  const selfActs = ev.actor === null || ev.actor === '' || ev.actor === app;
  const requestor = selfActs ? app : (ev.actor as string);
  const peer = ev.source ?? ev.destination;
  const peerPoint = peer ? accessPoint(peer) : undefined;
  // The requestor: a remote user/AE at `source` when one is recorded, otherwise our application.
  participants.push(
    el(
      'ActiveParticipant',
      [
        ['UserID', requestor],
        ['UserIsRequestor', 'true'],
        ...(!selfActs && peerPoint && ev.source
          ? ([
              ['NetworkAccessPointID', peerPoint.id],
              ['NetworkAccessPointTypeCode', peerPoint.type],
            ] as const)
          : []),
      ],
      [coded('RoleIDCode', !selfActs && ev.source ? ROLE_SOURCE : ROLE_APPLICATION)],
    ),
  );
  /** A non-requesting peer (the source or the destination of what was done), with its access point. */
  const peerParticipant = (userId: string, address: string, role: ReturnType<typeof coded>): string => {
    const p = accessPoint(address);
    return el(
      'ActiveParticipant',
      [
        ['UserID', userId],
        ['UserIsRequestor', 'false'],
        ['NetworkAccessPointID', p.id],
        ['NetworkAccessPointTypeCode', p.type],
      ],
      [role],
    );
  };
  if (ev.source && selfActs)
    participants.push(peerParticipant(accessPoint(ev.source).id, ev.source, coded('RoleIDCode', ROLE_SOURCE)));
  if (ev.destination)
    participants.push(peerParticipant(ev.destination, ev.destination, coded('RoleIDCode', ROLE_DESTINATION)));
  if (!selfActs) {
    // The gateway itself, the other end of what the requestor did.
    participants.push(
      el('ActiveParticipant', [
        ['UserID', app],
        ['UserIsRequestor', 'false'],
      ]),
    );
  }

  const objects: string[] = [];
  if (eventId.code === AuditEventId.AuditLogUsed.code) {
    // A.5.3.2: the audit log itself is the participant object (type 2, role 13 Security Resource).
    objects.push(
      el(
        'ParticipantObjectIdentification',
        [
          ['ParticipantObjectID', opts.auditLogUri ?? `radscribe://${opts.auditSourceId}/audit_events`],
          ['ParticipantObjectTypeCode', ParticipantObjectType.SystemObject],
          ['ParticipantObjectTypeCodeRole', ParticipantObjectRole.SecurityResource],
        ],
        [coded('ParticipantObjectIDTypeCode', ID_TYPE_URI), el('ParticipantObjectName', [], [SECURITY_AUDIT_LOG])],
      ),
    );
  }
  if (ev.patientId) {
    objects.push(
      el(
        'ParticipantObjectIdentification',
        [
          ['ParticipantObjectID', ev.patientId],
          ['ParticipantObjectTypeCode', ParticipantObjectType.Person],
          ['ParticipantObjectTypeCodeRole', ParticipantObjectRole.Patient],
        ],
        [coded('ParticipantObjectIDTypeCode', { code: '2', scheme: 'RFC-3881', meaning: 'Patient Number' }), NO_NAME],
      ),
    );
  }
  if (ev.studyInstanceUid) {
    objects.push(
      el(
        'ParticipantObjectIdentification',
        [
          ['ParticipantObjectID', ev.studyInstanceUid],
          ['ParticipantObjectTypeCode', ParticipantObjectType.SystemObject],
          ['ParticipantObjectTypeCodeRole', ParticipantObjectRole.Report],
        ],
        [coded('ParticipantObjectIDTypeCode', ID_TYPE_STUDY), NO_NAME, ...sopClassDescription(ev.sopInstances ?? [])],
      ),
    );
  }

  const identification = el(
    'EventIdentification',
    [
      ['EventActionCode', ev.actionCode],
      ['EventDateTime', dateTime(ev.occurredAt)],
      ['EventOutcomeIndicator', String(ev.outcome)],
    ],
    [coded('EventID', eventId), ...(typeCode ? [coded('EventTypeCode', typeCode)] : [])],
  );
  // PS3.15 A.5.1 AuditSourceTypeCode 4: "Application Server process tier in a multi-tier system".
  const sourceId = el(
    'AuditSourceIdentification',
    [['AuditSourceID', opts.auditSourceId]],
    [
      el('AuditSourceTypeCode', [
        ['csd-code', '4'],
        ['codeSystemName', 'RFC-3881'],
        ['originalText', 'Application Server Process'],
      ]),
    ],
  );
  return el('AuditMessage', [], [identification, ...participants, sourceId, ...objects]);
}
