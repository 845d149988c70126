import path from 'node:path';
import { loadConfig } from '../../../src/config.js';
import { DICOM_TLS_CIPHER_STRING, DICOM_TLS12_CIPHERS, isTlsRefusal } from '../../../src/dimse/dicom-tls.js';
import { AssociationFailure, DimseAssociationError } from '../../../src/dimse/requestor.js';
import { StorageScp } from '../../../src/dimse/storage-scp.js';
import { ConfigError, ErrorCode } from '../../../src/errors.js';
import { PACKAGE_ROOT } from '../../../src/runtime-paths.js';

function problemsOf(overrides: Record<string, unknown>): readonly string[] {
  try {
    loadConfig({ env: {}, overrides: overrides as never });
  } catch (err) {
    expect(err).toBeInstanceOf(ConfigError);
    return (err as ConfigError).problems;
  }
  throw new Error('expected a ConfigError');
}

const listener = (tls: Record<string, string | boolean>) => ({ aeTitle: 'RADSCRIBE', port: 2762, tls });
const dimseDest = (extra: Record<string, Record<string, string>>) => ({
  name: 'pacs',
  type: 'dimse',
  host: 'pacs.test',
  port: 2762,
  calledAeTitle: 'PACS',
  ...extra,
});

describe('DICOM TLS config (dimse.listeners[].tls, destinations[].tls)', () => {
  it('a listener tls block: client certificates required by default, TLS 1.2 least; paths resolved', () => {
    const cfg = loadConfig({
      env: {},
      baseDir: '/etc/radscribe',
      overrides: { dimse: { listeners: [listener({ certFile: 'scp.pem', keyFile: 'scp.key', caFile: 'ca.pem' })] } },
    });
    expect(cfg.dimse.listeners[0]?.tls).toEqual({
      certFile: '/etc/radscribe/scp.pem',
      keyFile: '/etc/radscribe/scp.key',
      caFile: '/etc/radscribe/ca.pem',
      requireClientCert: true,
      minVersion: 'TLSv1.2',
    });
  });

  it('reports a missing key and CA, a version below TLS 1.2, and unknown keys, all at once', () => {
    const problems = problemsOf({
      dimse: {
        listeners: [
          listener({ certFile: 'scp.pem', minVersion: 'TLSv1.1', cipher: 'RC4' }),
          { aeTitle: 'OTHER', port: 2763, tls: { certFile: 'a.pem', keyFile: 'a.key', requireClientCert: false } },
        ],
      },
    });
    expect(problems).toEqual(
      expect.arrayContaining([
        'dimse.listeners[0].tls.keyFile: is required',
        'dimse.listeners[0].tls.caFile: is required when requireClientCert is true',
        'dimse.listeners[0].tls.minVersion: must be one of TLSv1.2, TLSv1.3',
        expect.stringMatching(/^dimse\.listeners\[0\]\.tls\.cipher: unknown key/),
      ]),
    );
    // requireClientCert false: no CA needed (the listener only asks).
    expect(problems.filter((p) => p.startsWith('dimse.listeners[1]'))).toEqual([]);
  });

  it('a dimse destination tls block: CA required, certificate and key together, serverName kept; not on other types', () => {
    const cfg = loadConfig({
      env: {},
      baseDir: '/etc/radscribe',
      overrides: {
        defaultDestination: 'pacs',
        destinations: [
          dimseDest({ tls: { caFile: 'ca.pem', certFile: 'me.pem', keyFile: 'me.key', serverName: 'pacs.test' } }),
        ],
      },
    });
    const d = cfg.destinations[0];
    expect(d?.type === 'dimse' && d.tls).toEqual({
      caFile: '/etc/radscribe/ca.pem',
      certFile: '/etc/radscribe/me.pem',
      keyFile: '/etc/radscribe/me.key',
      serverName: 'pacs.test',
      minVersion: 'TLSv1.2',
    });
    const problems = problemsOf({
      destinations: [
        dimseDest({ tls: { certFile: 'me.pem' } }),
        { name: 'folder', type: 'folder', path: 'out', tls: { caFile: 'ca.pem' } },
      ],
    });
    expect(problems).toEqual(
      expect.arrayContaining([
        'destinations[0].tls.caFile: is required',
        'destinations[0].tls.keyFile: is required when certFile is set',
        'destinations[1].tls: only used with type dimse',
      ]),
    );
  });
});

describe('DICOM TLS policy', () => {
  it('offers only ECDHE AEAD suites (BCP 195, RFC 9325 §4.2), TLS 1.3 ones first', () => {
    expect(
      DICOM_TLS12_CIPHERS.every((c) => /^ECDHE-(ECDSA|RSA)-(AES(128|256)-GCM-SHA(256|384)|CHACHA20-POLY1305)$/.test(c)),
    ).toBe(true);
    expect(DICOM_TLS_CIPHER_STRING).not.toMatch(/CBC|SHA1\b|RC4|3DES|NULL|(^|:)(DHE|AES)-/);
    expect(DICOM_TLS_CIPHER_STRING.split(':')[0]).toBe('TLS_AES_256_GCM_SHA384');
  });

  it('a TLS refusal is permanent (pacs-rejected); a failed TCP connect stays transient', () => {
    expect(new DimseAssociationError(AssociationFailure.TlsRefused, 'x').code).toBe(ErrorCode.PacsRejected);
    expect(new DimseAssociationError(AssociationFailure.ConnectFailed, 'x').code).toBe(ErrorCode.PacsUnavailable);
    expect(isTlsRefusal({ code: 'UNABLE_TO_VERIFY_LEAF_SIGNATURE' })).toBe(true);
    expect(isTlsRefusal({ code: 'ERR_TLS_CERT_ALTNAME_INVALID' })).toBe(true);
    expect(isTlsRefusal({ code: 'ERR_SSL_TLSV1_ALERT_UNKNOWN_CA' })).toBe(true);
    expect(isTlsRefusal({ code: 'ECONNRESET' })).toBe(false);
    expect(isTlsRefusal(new Error('no code'))).toBe(false);
  });

  it('an unreadable certificate file is config-invalid at construction, named by listener', () => {
    const missing = path.join(PACKAGE_ROOT, 'no-such-dir', 'scp.pem');
    const make = () =>
      new StorageScp({
        listener: {
          aeTitle: 'RADSCRIBE',
          port: 0,
          host: '127.0.0.1',
          tls: { certFile: missing, keyFile: missing, caFile: missing, requireClientCert: true, minVersion: 'TLSv1.2' },
        },
        sink: {} as never,
        tmpDir: '/nonexistent',
        pool: {} as never,
      });
    expect(make).toThrow(expect.objectContaining({ code: ErrorCode.ConfigInvalid }));
    expect(make).toThrow(/dimse\.listeners\[RADSCRIBE\]\.tls\.certFile: cannot read .*ENOENT/);
  });
});
