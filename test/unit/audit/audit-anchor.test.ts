import { generateKeyPairSync, sign } from 'node:crypto';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import {
  ANCHOR_FORMAT,
  ANCHOR_FORMAT_V1,
  anchorSignatureValid,
  anchorTopId,
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
  const lane0 = { lane: 0, lastId: 42, headHash: 'ab'.repeat(32), count: 40 };
  const lane5 = { lane: 5, lastId: 41, headHash: 'ef'.repeat(32), count: 1 };
  const statement = { format: ANCHOR_FORMAT, lanes: [lane0, lane5], anchoredAt: '2026-01-01T00:00:00.000Z' };

  it('signs with a keygen key pair; any changed field breaks the signature', () => {
    generateAnchorKeys(path.join(dir, 'k.pem'), path.join(dir, 'k.pub'));
    const priv = readPrivateKey(path.join(dir, 'k.pem'));
    const pub = readPublicKey(path.join(dir, 'k.pub'));
    const a = signAnchor(statement, priv);
    expect(anchorSignatureValid(a, pub)).toBe(true);
    for (const change of [{ lastId: 39 }, { count: 39 }, { headHash: 'cd'.repeat(32) }, { lane: 1 }]) {
      expect(anchorSignatureValid({ ...a, lanes: [{ ...lane0, ...change }, lane5] }, pub)).toBe(false);
      expect(anchorSignatureValid({ ...a, lanes: [lane0, { ...lane5, ...change }] }, pub)).toBe(false);
    }
    // A lane dropped from the statement (its rows deleted, the anchor edited to match) breaks it too.
    expect(anchorSignatureValid({ ...a, lanes: [lane0] }, pub)).toBe(false);
    expect(anchorSignatureValid({ ...a, anchoredAt: 'x' }, pub)).toBe(false);
    // Lane order in the file does not matter: the signed bytes list lanes by number.
    expect(anchorSignatureValid({ ...a, lanes: [lane5, lane0] }, pub)).toBe(true);
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
    writeAnchor(
      d,
      signAnchor(
        { ...statement, lanes: [{ ...lane0, lastId: 50 }, lane5], anchoredAt: '2026-01-02T00:00:00.000Z' },
        keys.privateKey,
      ),
    );
    writeAnchor(d, signAnchor(statement, keys.privateKey));
    writeFileSync(path.join(d, 'anchor-junk.json'), '{"format":"nope"}');
    writeFileSync(path.join(d, 'README'), 'not an anchor file name: ignored');
    const got = readAnchors(d, keys.publicKey);
    expect(got.map((a) => [anchorTopId(a.anchor), a.signatureValid])).toEqual([
      [0, false],
      [42, true],
      [50, true],
    ]);
  });

  it('still verifies a format-1 anchor (one chain, before migration 0016) as a statement about lane 0', () => {
    const keys = generateKeyPairSync('ed25519');
    const d = mkdtempSync(path.join(tmpdir(), 'rs-anchors-v1-'));
    // The bytes format 1 signed: format, lastId, headHash, count, time.
    const v1 = { format: ANCHOR_FORMAT_V1, lastId: 42, headHash: 'ab'.repeat(32), count: 40, anchoredAt: 't' };
    const bytes = Buffer.from([v1.format, '42', v1.headHash, '40', 't'].join('\n'));
    const signature = sign(null, bytes, keys.privateKey).toString('base64');
    writeFileSync(path.join(d, 'anchor-v1.json'), JSON.stringify({ ...v1, signature }));
    writeFileSync(path.join(d, 'anchor-v1-forged.json'), JSON.stringify({ ...v1, count: 41, signature }));
    const got = readAnchors(d, keys.publicKey);
    expect(got.map((a) => [path.basename(a.file), a.signatureValid, a.anchor.lanes])).toEqual([
      ['anchor-v1-forged.json', false, [{ ...lane0, count: 41 }]],
      ['anchor-v1.json', true, [lane0]],
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
      chainLane: 0,
      prevHash: '',
      rowHash: '',
    };
    expect(canonicalAuditEvent(row)).toBe(
      '{"id": 7, "kind": "audit-query", "actor": null, "detail": {}, "source": null, "outcome": 0, "event_id": "110101", "action_code": "R", "destination": null, "occurred_at": "2026-01-01T00:00:00.250000Z", "event_type_code": null, "sop_instance_uids": null, "study_instance_uid": null}',
    );
    expect(canonicalAuditEvent({ ...row, patientId: 'P' })).toContain(
      '"event_id": "110101", "patient_id": "P", "action_code"',
    );
    // chain_lane (migration 0016) only for lanes other than 0: rows chained before keep their text.
    expect(canonicalAuditEvent({ ...row, chainLane: 7 })).toContain(
      '"outcome": 0, "event_id": "110101", "chain_lane": 7,',
    );
  });
});
