import { createHash } from 'node:crypto';
import { SrValidationError } from '../../errors.js';
import { SopClass } from '../uids.js';
import { type Code, Codes } from './coding.js';
import { PreliminaryFlag, VerificationFlag } from './sr-document.js';

/**
 * RadScribe's policy for its drafts (reference/dicom-sr-and-audit.md §3, §4): every draft is
 * PRELIMINARY and UNVERIFIED, says so in a disclaimer, is labelled as meaningless when the model is
 * a test fixture, sits in a recognisable series of the source study, and has deterministic UIDs so a
 * retry re-sends the same instance. The standard's side (modules, serialisation) is sr-document.ts;
 * the content is templates.ts; draft-sr.ts puts the three together.
 */

/**
 * Output profiles, chosen per destination (config `srProfile`):
 * - `report`: Comprehensive SR, TID 2000 Basic Diagnostic Imaging Report (narrative findings);
 * - `air`: Comprehensive 3D SR, TID 1500 Measurement Report per IHE AI Results (AIR Rev 1.1 §6.5.3.1).
 */
export const SrProfile = { Report: 'report', Air: 'air' } as const;
export type SrProfile = (typeof SrProfile)[keyof typeof SrProfile];
export const SR_PROFILES: ReadonlySet<string> = new Set(Object.values(SrProfile));
export function isSrProfile(v: unknown): v is SrProfile {
  return typeof v === 'string' && SR_PROFILES.has(v);
}

/**
 * SOP Class per profile (PS3.4 Table B.5-1). IHE AIR requires Comprehensive 3D SR for TID 1500
 * results; the report profile stays Comprehensive SR.
 */
export const SR_PROFILE_SOP_CLASS: Readonly<Record<SrProfile, SopClass>> = {
  report: SopClass.ComprehensiveSrStorage,
  air: SopClass.Comprehensive3dSrStorage,
};

/**
 * Purpose of Reference of the model's Contributing Equipment item: AIR Rev 1.1 §6.5.3.1 prescribes its
 * own; the report profile keeps the standard CID 7005 code (109102, DCM, "Processing Equipment").
 */
export function draftPurposeOfReference(profile: SrProfile): Code {
  return profile === SrProfile.Air ? Codes.ProcessingAlgorithm : Codes.ProcessingEquipment;
}

/** A draft is never final (PS3.3 §C.17.2 Preliminary Flag). */
export const DRAFT_PRELIMINARY_FLAG = PreliminaryFlag.Preliminary;
/** No physician has verified a draft (PS3.3 §C.17.2 Verification Flag). */
export const DRAFT_VERIFICATION_FLAG = VerificationFlag.Unverified;

/** Fixed Series Number of the draft series, so operators can recognise it in every study. */
export const DRAFT_SR_SERIES_NUMBER = 9901;
/** Instance Number of the SR in the draft series (its PDF companion is 2). */
export const DRAFT_SR_INSTANCE_NUMBER = 1;
/** Series Description (LO, ≤ 64 characters and, to be safe with byte-counting validators, ≤ 64 UTF-8 bytes). */
export const DRAFT_SR_SERIES_DESCRIPTION = 'AI DRAFT – UNVERIFIED – NOT FOR DIAGNOSTIC USE';
/** Series Description when the model is a test fixture (its output is random text). */
export const FIXTURE_SR_SERIES_DESCRIPTION = 'TEST FIXTURE – OUTPUT IS MEANINGLESS – UNVERIFIED AI DRAFT';
/** Disclaimer TEXT in the content tree (Comment, 121106 DCM). */
export const DRAFT_SR_DISCLAIMER =
  'UNVERIFIED AI DRAFT. Generated automatically by a vision-language model and not reviewed by a physician. NOT FOR DIAGNOSTIC USE.';
/** Prefix of the disclaimer when the model is a test fixture. */
export const FIXTURE_DISCLAIMER_PREFIX = 'TEST FIXTURE – OUTPUT IS MEANINGLESS. ';

/** Series Description of a draft by this model. */
export function draftSeriesDescription(fixture: boolean): string {
  return fixture ? FIXTURE_SR_SERIES_DESCRIPTION : DRAFT_SR_SERIES_DESCRIPTION;
}

/** Disclaimer of a draft by this model. */
export function draftDisclaimer(fixture: boolean): string {
  return (fixture ? FIXTURE_DISCLAIMER_PREFIX : '') + DRAFT_SR_DISCLAIMER;
}

/** Completion Flag Description (PS3.3 §C.17.2.1) of a PARTIAL draft. */
export function draftCompletionDescription(described: number, total: number): string {
  return described < total ? `AI findings for ${described} of ${total} input images` : 'AI output incomplete';
}

/**
 * A UUID-derived UID (PS3.5 §B.2): "2.25." + the decimal value of a 128-bit integer. The integer is
 * the first 16 bytes of SHA-256 over the parts, with the RFC 9562 version-8 and variant bits set so it
 * is a well-formed (name-based, custom) UUID. Deterministic: the same parts give the same UID.
 */
export function deriveUid(...parts: readonly string[]): string {
  const digest = createHash('sha256')
    .update(JSON.stringify(['radscribe-uid-v1', ...parts]))
    .digest();
  const b = Buffer.from(digest.subarray(0, 16));
  b[6] = ((b[6] ?? 0) & 0x0f) | 0x80; // version 8
  b[8] = ((b[8] ?? 0) & 0x3f) | 0x80; // variant 10xx
  return `2.25.${BigInt(`0x${b.toString('hex')}`).toString(10)}`;
}

/** Series Instance UID of the draft series: one per (study, model Device UID). */
export function draftSeriesInstanceUid(studyInstanceUid: string, deviceUid: string): string {
  return deriveUid('series', studyInstanceUid, deviceUid);
}

/** Version of a study's result when none is given: the first input set (migration 0019). */
export const FIRST_STUDY_VERSION = 1;

/**
 * SOP Instance UID of the draft: (study, Device UID, version of the study's result, sorted set of input
 * SOP Instance UIDs), so a retry of the same version re-sends the same instance and PACS de-duplicate
 * it (dicom-sr-and-audit.md §4 "Idempotent export"), while a later version (instances that arrived
 * after a job had claimed the study, src/ingest/study-lifecycle.ts) is a new document with a UID of
 * its own even when the selection picked the same images: an SR is never modified in place, a new
 * one names it in the Predecessor Documents Sequence (PS3.3 C.17.2.1).
 */
export function draftSopInstanceUid(
  studyInstanceUid: string,
  deviceUid: string,
  inputSopInstanceUids: Iterable<string>,
  profile: SrProfile = SrProfile.Report,
  version: number = FIRST_STUDY_VERSION,
): string {
  if (!Number.isInteger(version) || version < FIRST_STUDY_VERSION)
    throw new SrValidationError(`draftSopInstanceUid: study version must be an integer ≥ ${FIRST_STUDY_VERSION}`);
  const sorted = [...new Set(inputSopInstanceUids)].sort();
  // The report profile keeps the label it had before profiles existed, so drafts already exported
  // re-send with the same UID; every other profile gets its own label and so its own UID.
  const label = profile === SrProfile.Report ? 'sr-instance' : `sr-instance:${profile}`;
  // Version 1 derives as it did before versions existed, for the same reason.
  const versioned = version === FIRST_STUDY_VERSION ? [] : [`version:${version}`];
  return deriveUid(label, studyInstanceUid, deviceUid, ...versioned, ...sorted);
}

/** Instance Number (0020,0013) of the version-`version` draft in the draft series: 1, 2, … */
export function draftInstanceNumber(version: number = FIRST_STUDY_VERSION): number {
  return DRAFT_SR_INSTANCE_NUMBER + version - FIRST_STUDY_VERSION;
}

/** Tracking UID of a TID 1500 measurement group: stable per (SR, finding position), so a re-send carries the same UIDs. */
export function draftTrackingUid(srSopInstanceUid: string, findingIndex: number): string {
  return deriveUid('tracking', srSopInstanceUid, String(findingIndex));
}

/** SOP Instance UID of the Encapsulated PDF companion of an SR: one per SR instance, so retries de-duplicate too. */
export function draftPdfSopInstanceUid(srSopInstanceUid: string): string {
  return deriveUid('pdf-companion', srSopInstanceUid);
}
