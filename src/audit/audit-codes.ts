/**
 * RadScribe audit events and their DICOM audit codes (PS3.15 A.5.3 "DICOM Specific Audit Messages",
 * EventID / EventTypeCode from PS3.16 CID 400/401, scheme DCM), following
 * reference/dicom-sr-and-audit.md §5 and dcm4chee's trigger mapping.
 */

/** A coded value (PS3.15 A.5.1 EventID: csd-code, codeSystemName, originalText). */
export interface AuditCode {
  readonly code: string;
  readonly scheme: 'DCM';
  readonly meaning: string;
}

const dcm = (code: string, meaning: string): AuditCode => ({ code, scheme: 'DCM', meaning });

/** PS3.16 CID 400 Audit Event ID (subset we emit). */
export const AuditEventId = {
  ApplicationActivity: dcm('110100', 'Application Activity'),
  AuditLogUsed: dcm('110101', 'Audit Log Used'),
  BeginTransferringDicomInstances: dcm('110102', 'Begin Transferring DICOM Instances'),
  DicomInstancesAccessed: dcm('110103', 'DICOM Instances Accessed'),
  DicomInstancesTransferred: dcm('110104', 'DICOM Instances Transferred'),
  DicomStudyDeleted: dcm('110105', 'DICOM Study Deleted'),
  Export: dcm('110106', 'Export'),
  Query: dcm('110112', 'Query'),
  SecurityAlert: dcm('110113', 'Security Alert'),
  UserAuthentication: dcm('110114', 'User Authentication'),
} as const;

/** PS3.16 CID 401 Audit Event Type Code (subset). */
export const AuditEventTypeCode = {
  ApplicationStart: dcm('110120', 'Application Start'),
  ApplicationStop: dcm('110121', 'Application Stop'),
  Login: dcm('110122', 'Login'),
  NodeAuthentication: dcm('110126', 'Node Authentication'),
  NetworkConfiguration: dcm('110128', 'Network Configuration'),
  SecurityConfiguration: dcm('110129', 'Security Configuration'),
  SoftwareConfiguration: dcm('110131', 'Software Configuration'),
  UseOfRestrictedFunction: dcm('110132', 'Use of Restricted Function'),
} as const;

/** PS3.15 A.5.1 EventActionCode. */
export const EventActionCode = {
  Create: 'C',
  Read: 'R',
  Update: 'U',
  Delete: 'D',
  Execute: 'E',
} as const;
export type EventActionCode = (typeof EventActionCode)[keyof typeof EventActionCode];

/** PS3.15 A.5.1 EventOutcomeIndicator. */
export const EventOutcome = {
  Success: 0,
  /** Action restarted, e.g. a retried job. */
  MinorFailure: 4,
  /** Action terminated, e.g. an instance refused. */
  SeriousFailure: 8,
  /** Action made unavailable, e.g. the audit store itself failing. */
  MajorFailure: 12,
} as const;
export type EventOutcome = (typeof EventOutcome)[keyof typeof EventOutcome];

/** RadScribe's closed set of audit event kinds; matches the CHECK on audit_events.kind. */
export const AuditEventKind = {
  /** An instance was received (STOW-RS, C-STORE, import) and stored. */
  InstanceReceived: 'instance-received',
  /** The QIDO-RS poller searched a remote node. */
  RemoteQuery: 'remote-query',
  /** Instances were retrieved from a remote node with WADO-RS. */
  RemoteRetrieve: 'remote-retrieve',
  /** A stable study was queued for AI description. */
  StudyQueued: 'study-queued',
  /** The model read a study's pixel data. */
  InferenceRun: 'inference-run',
  /** A draft SR was sent to a destination PACS. */
  SrExported: 'sr-exported',
  /** Configuration (AE titles, destinations, settings) changed. */
  ConfigChange: 'config-change',
  /** Someone read the audit trail. */
  AuditQuery: 'audit-query',
  ApplicationStart: 'application-start',
  ApplicationStop: 'application-stop',
  /** An instance offered to RadScribe (STOW-RS, C-STORE, WADO-RS retrieve) was refused; outcome 8. */
  InstanceRefused: 'instance-refused',
  /** An instance that crashed or exceeded a limit while being read was set aside, never retried. */
  InstanceQuarantined: 'instance-quarantined',
  /** Retention removed a study's received instances. */
  StudyDeleted: 'study-deleted',
  /** A DIMSE association (or its TLS handshake) was refused: unknown calling AE, host, or certificate. */
  AssociationRejected: 'association-rejected',
  /** A caller presented credentials (API token, OIDC bearer): outcome 0 accepted, 4 refused. */
  UserAuthentication: 'user-authentication',
  /** An authenticated caller asked for something its role does not allow. */
  AccessRefused: 'access-refused',
  /** Security settings changed: an API token created or revoked, a role granted. */
  SecurityConfiguration: 'security-configuration',
  /** A caller fetched instances RadScribe holds with WADO-RS (PS3.18 §10.4); outcome 0. */
  InstancesRetrieved: 'instances-retrieved',
  /**
   * Audit retention dropped a segment of the trail after archiving it (src/audit/audit-retention.ts);
   * the event is the retention checkpoint. Written by audit_retention_drop() (migration 0021) only.
   */
  AuditRetention: 'audit-retention',
} as const;
export type AuditEventKind = (typeof AuditEventKind)[keyof typeof AuditEventKind];

export interface AuditEventDefinition {
  readonly eventId: AuditCode;
  readonly eventTypeCode?: AuditCode;
  readonly action: EventActionCode;
  /** Further event IDs this kind also stands for (e.g. 110102 semantics of an export). */
  readonly alsoImplies?: readonly AuditCode[];
}

/**
 * Mapping (dicom-sr-and-audit.md §5 "Proposed mapping for RadScribe"):
 * - instance-received → 110104 C: dcm4chee maps "instances stored" to Instances Transferred.
 * - remote-query → 110112 E: QIDO and C-FIND are Query (PS3.15 A.5.3.12 fixes action E).
 * - remote-retrieve → 110104 C: from our side the retrieve creates local copies (we chose 110104
 *   over 110103 because the instances are transferred to, and stored by, RadScribe).
 * - study-queued → 110103 R: PS3.15 has no "work item scheduled" event. Queueing is the decision
 *   that the AI application will read the study's instances, and A.5.3.2 Instances Accessed is the
 *   message for instances being "utilized"; action R (read) is the intent. inference-run records
 *   the read itself; the two are told apart by `kind`.
 * - inference-run → 110103 R: the model reads PHI pixel data.
 * - sr-exported → 110106 Export, with 110102 Begin Transferring semantics (dcm4chee: export → Begin
 *   Transferring); PS3.15 A.5.3.8 Export uses action R (data read for export).
 * - config-change → 110113 Security Alert with 110131 Software Configuration (110128 Network
 *   Configuration for AE/destination changes, chosen by the caller via detail.scope = 'network').
 * - audit-query → 110101 Audit Log Used (A.5.3.3), action R.
 * - application-start/stop → 110100 with 110120/110121, action E (A.5.3.1).
 * - instance-refused → 110104 C with outcome 8: the transfer was attempted and refused (A.5.3.5
 *   "DICOM Instances Transferred" carries failed transfers through EventOutcomeIndicator).
 * - instance-quarantined → 110113 Security Alert, action E: an input that broke a limit or killed
 *   a reader is a security-relevant event, not an access.
 * - study-deleted → 110105 DICOM Study Deleted, action D (A.5.3.6).
 * - association-rejected → 110113 Security Alert with 110126 Node Authentication, action E: a node
 *   that failed to authenticate (A.5.3.11; dcm4chee maps TLS failure to Security Alert).
 * - user-authentication → 110114 User Authentication with 110122 Login, action E (A.5.3.13); a
 *   refused credential carries outcome 4.
 * - access-refused → 110113 Security Alert with 110132 Use of Restricted Function, action E.
 * - security-configuration → 110113 Security Alert with 110129 Security Configuration, action E.
 * - instances-retrieved → 110104 R: a WADO-RS retrieve moves instances from RadScribe to another
 *   application (A.5.3.5 DICOM Instances Transferred is the message for a transfer between AEs;
 *   A.5.3.2 Instances Accessed is for use without a transfer); action R, the source reads its copy.
 * - audit-retention → 110113 Security Alert with 110129 Security Configuration, action E: events
 *   of the security audit log itself were removed (after a signed archive of them was verified).
 *   110101 Audit Log Used fixes action R (PS3.15 A.5.3.2, reading the log), and 110105 Study
 *   Deleted is about a study's instances; CID 403 has no "audit records purged" type, and applying
 *   the log's retention policy is the security configuration at work, so 110129 is the closest.
 */
export const AUDIT_EVENTS: Readonly<Record<AuditEventKind, AuditEventDefinition>> = {
  'instance-received': { eventId: AuditEventId.DicomInstancesTransferred, action: EventActionCode.Create },
  'remote-query': { eventId: AuditEventId.Query, action: EventActionCode.Execute },
  'remote-retrieve': { eventId: AuditEventId.DicomInstancesTransferred, action: EventActionCode.Create },
  'study-queued': { eventId: AuditEventId.DicomInstancesAccessed, action: EventActionCode.Read },
  'inference-run': { eventId: AuditEventId.DicomInstancesAccessed, action: EventActionCode.Read },
  'sr-exported': {
    eventId: AuditEventId.Export,
    action: EventActionCode.Read,
    alsoImplies: [AuditEventId.BeginTransferringDicomInstances],
  },
  'config-change': {
    eventId: AuditEventId.SecurityAlert,
    eventTypeCode: AuditEventTypeCode.SoftwareConfiguration,
    action: EventActionCode.Execute,
  },
  'audit-query': { eventId: AuditEventId.AuditLogUsed, action: EventActionCode.Read },
  'application-start': {
    eventId: AuditEventId.ApplicationActivity,
    eventTypeCode: AuditEventTypeCode.ApplicationStart,
    action: EventActionCode.Execute,
  },
  'application-stop': {
    eventId: AuditEventId.ApplicationActivity,
    eventTypeCode: AuditEventTypeCode.ApplicationStop,
    action: EventActionCode.Execute,
  },
  'instance-refused': { eventId: AuditEventId.DicomInstancesTransferred, action: EventActionCode.Create },
  'instance-quarantined': { eventId: AuditEventId.SecurityAlert, action: EventActionCode.Execute },
  'study-deleted': { eventId: AuditEventId.DicomStudyDeleted, action: EventActionCode.Delete },
  'association-rejected': {
    eventId: AuditEventId.SecurityAlert,
    eventTypeCode: AuditEventTypeCode.NodeAuthentication,
    action: EventActionCode.Execute,
  },
  'user-authentication': {
    eventId: AuditEventId.UserAuthentication,
    eventTypeCode: AuditEventTypeCode.Login,
    action: EventActionCode.Execute,
  },
  'access-refused': {
    eventId: AuditEventId.SecurityAlert,
    eventTypeCode: AuditEventTypeCode.UseOfRestrictedFunction,
    action: EventActionCode.Execute,
  },
  'security-configuration': {
    eventId: AuditEventId.SecurityAlert,
    eventTypeCode: AuditEventTypeCode.SecurityConfiguration,
    action: EventActionCode.Execute,
  },
  'instances-retrieved': { eventId: AuditEventId.DicomInstancesTransferred, action: EventActionCode.Read },
  'audit-retention': {
    eventId: AuditEventId.SecurityAlert,
    eventTypeCode: AuditEventTypeCode.SecurityConfiguration,
    action: EventActionCode.Execute,
  },
};

/** Event type for a config change: 110128 for network/AE changes, else 110131 (PS3.15 A.5.3.11). */
export function configChangeTypeCode(scope: unknown): AuditCode {
  return scope === 'network' ? AuditEventTypeCode.NetworkConfiguration : AuditEventTypeCode.SoftwareConfiguration;
}
