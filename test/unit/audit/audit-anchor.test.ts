import { generateKeyPairSync } from 'node:crypto';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import {
  ANCHOR_FORMAT,
  anchorSignatureValid,
  generateAnchorKeys,
  readAnchors,
  readPrivateKey,
  readPublicKey,
  signAnchor,
  writeAnchor,
} from '../../../src/audit/audit-anchor.js';
import { canonicalAuditEvent, jsonString, utcMicros } from '../../../src/audit/audit-canonical.js';

describe('audit anchors (Ed25519)', () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'rs-anchor-'));
  const statement = {
    format: ANCHOR_FORMAT,
    lastId: 42,
    headHash: 'ab'.repeat(32),
    count: 40,
    anchoredAt: '2026-01-01T00:00:00.000Z',
  };

  it('signs with a keygen key pair; any changed field breaks the signature', () => {
    generateAnchorKeys(path.join(dir, 'k.pem'), path.join(dir, 'k.pub'));
    const priv = readPrivateKey(path.join(dir, 'k.pem'));
    const pub = readPublicKey(path.join(dir, 'k.pub'));
    const a = signAnchor(statement, priv);
    expect(anchorSignatureValid(a, pub)).toBe(true);
    for (const change of [{ lastId: 41 }, { count: 39 }, { headHash: 'cd'.repeat(32) }, { anchoredAt: 'x' }])
      expect(anchorSignatureValid({ ...a, ...change }, pub)).toBe(false);
    expect(anchorSignatureValid(a, generateKeyPairSync('ed25519').publicKey)).toBe(false);
    // keygen never overwrites a key (every anchor signed with it would be orphaned).
    expect(() => generateAnchorKeys(path.join(dir, 'k.pem'), path.join(dir, 'k2.pub'))).toThrow(/EEXIST/);
  });

  it('refuses a key that is not Ed25519, naming the file', () => {
    const rsa = generateKeyPairSync('rsa', { modulusLength: 1024 });
    const f = path.join(dir, 'rsa.pem');
    writeFileSync(f, rsa.privateKey.export({ type: 'pkcs8', format: 'pem' }));
    expect(() => readPrivateKey(f)).toThrow(`audit anchor private key ${f}: is rsa, not ed25519`);
    expect(() => readPublicKey(path.join(dir, 'missing.pub'))).toThrow(/audit anchor public key .*missing\.pub/);
  });

  it('reads a directory oldest head first; a file that is not an anchor counts as unsigned', () => {
    const keys = generateKeyPairSync('ed25519');
    const d = mkdtempSync(path.join(tmpdir(), 'rs-anchors-'));
    writeAnchor(d, signAnchor({ ...statement, lastId: 50, anchoredAt: '2026-01-02T00:00:00.000Z' }, keys.privateKey));
    writeAnchor(d, signAnchor(statement, keys.privateKey));
    writeFileSync(path.join(d, 'anchor-junk.json'), '{"format":"nope"}');
    writeFileSync(path.join(d, 'README'), 'not an anchor file name: ignored');
    const got = readAnchors(d, keys.publicKey);
    expect(got.map((a) => [a.anchor.lastId, a.signatureValid])).toEqual([
      [0, false],
      [42, true],
      [50, true],
    ]);
  });
});

describe('canonical text helpers', () => {
  it('escapes as PostgreSQL escape_json does', () => {
    expect(jsonString('a"b\\c\n\t\u0001é')).toBe('"a\\"b\\\\c\\n\\t\\u0001é"');
  });
  it('keeps microseconds', () => {
    expect(utcMicros('1767225600.000001')).toBe('2026-01-01T00:00:00.000001Z');
    expect(utcMicros('1767225600')).toBe('2026-01-01T00:00:00.000000Z');
    expect(utcMicros('1767225600.5')).toBe('2026-01-01T00:00:00.500000Z');
  });
  it('orders keys as jsonb does (length, then bytes) and adds patient_id only when set', () => {
    const row = {
      id: '7',
      occurredEpoch: '1767225600.25',
      kind: 'audit-query',
      eventId: '110101',
      eventTypeCode: null,
      actionCode: 'R',
      outcome: 0,
      actor: null,
      source: null,
      destination: null,
      patientId: null,
      studyInstanceUid: null,
      sopInstanceUids: null,
      detailText: '{}',
      prevHash: '',
      rowHash: '',
    };
    expect(canonicalAuditEvent(row)).toBe(
      '{"id": 7, "kind": "audit-query", "actor": null, "detail": {}, "source": null, "outcome": 0, "event_id": "110101", "action_code": "R", "destination": null, "occurred_at": "2026-01-01T00:00:00.250000Z", "event_type_code": null, "sop_instance_uids": null, "study_instance_uid": null}',
    );
    expect(canonicalAuditEvent({ ...row, patientId: 'P' })).toContain(
      '"event_id": "110101", "patient_id": "P", "action_code"',
    );
  });
});
