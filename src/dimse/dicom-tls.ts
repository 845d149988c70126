import { constants } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { isIP } from 'node:net';
import tls from 'node:tls';
import { ErrorCode, RadScribeError } from '../errors.js';

/**
 * DICOM over TLS (PS3.15 Annex B Secure Transport Connection Profiles; PS3.8 §9.1.1 leaves the
 * transport to PS3.15): the Upper Layer runs unchanged on a TLS connection, both ends
 * authenticated by X.509 certificates (B.1). The policy is that of the BCP 195 profiles (B.9 BCP
 * 195, B.10 Non-Downgrading, B.11 Extended, and B.12 "BCP 195 RFC 8996, 9325", which newer
 * editions keep when retiring the others), i.e. RFC 9325 and RFC 8996:
 *  - TLS 1.2 at least (RFC 8996 deprecates 1.0 and 1.1); 1.3 when both ends have it.
 *  - Only AEAD cipher suites with forward secrecy (RFC 9325 §4.2): ECDHE key exchange with
 *    AES-GCM or ChaCha20-Poly1305. No CBC, no static RSA key exchange, no DHE (finite-field groups
 *    are negotiated badly by old peers, RFC 9325 §4.2.1), no NULL or export suites.
 *  - No TLS compression (RFC 9325 §3.3, CRIME) and no renegotiation (TLS 1.2 renegotiation is
 *    what RFC 5746 patched; nothing in DICOM needs it, and TLS 1.3 has none).
 * DCMTK's B.9, B.10 (its default) and B.11 profiles (`+px`, `+py`, `+pz`) each share suites with
 * this list (test/integration/dimse-tls.int.test.ts).
 */

/**
 * The TLS 1.2 suites we offer and accept (OpenSSL names; IANA names in comments), strongest first;
 * the server's order wins (`honorCipherOrder`).
 */
export const DICOM_TLS12_CIPHERS = [
  'ECDHE-ECDSA-AES256-GCM-SHA384', // TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384
  'ECDHE-RSA-AES256-GCM-SHA384', // TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384
  'ECDHE-ECDSA-CHACHA20-POLY1305', // TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256
  'ECDHE-RSA-CHACHA20-POLY1305', // TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256
  'ECDHE-ECDSA-AES128-GCM-SHA256', // TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256 (BCP 195 MUST)
  'ECDHE-RSA-AES128-GCM-SHA256', // TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256 (BCP 195 MUST)
] as const;

/** TLS 1.3 suites (RFC 8446 §9.1; all AEAD, all forward secret). */
export const DICOM_TLS13_CIPHERS = [
  'TLS_AES_256_GCM_SHA384',
  'TLS_CHACHA20_POLY1305_SHA256',
  'TLS_AES_128_GCM_SHA256',
] as const;

/** The `ciphers` string handed to node:tls (it takes TLS 1.3 and 1.2 names in one list). */
export const DICOM_TLS_CIPHER_STRING = [...DICOM_TLS13_CIPHERS, ...DICOM_TLS12_CIPHERS].join(':');

/** Least TLS version allowed (config `minVersion`). Closed set: BCP 195 forbids anything older. */
export const TlsMinVersion = { Tls12: 'TLSv1.2', Tls13: 'TLSv1.3' } as const;
export type TlsMinVersion = (typeof TlsMinVersion)[keyof typeof TlsMinVersion];

export const DEFAULT_TLS_MIN_VERSION: TlsMinVersion = TlsMinVersion.Tls12;

/** PS3.15 B.1 authenticates both ends: a listener refuses a client without a valid certificate. */
export const DEFAULT_REQUIRE_CLIENT_CERT = true;

/** OpenSSL options: no compression (RFC 9325 §3.3), no renegotiation (RFC 9325 §3.5). */
const SECURE_OPTIONS = constants.SSL_OP_NO_COMPRESSION | constants.SSL_OP_NO_RENEGOTIATION;

/** The TLS settings of one `dimse.listeners[]` item (config key `tls`). */
export interface DicomTlsListenerConfig {
  /** PEM certificate (chain) of this AE. */
  readonly certFile: string;
  readonly keyFile: string;
  /** PEM CA bundle that client certificates must chain to. */
  readonly caFile: string;
  /**
   * Refuse, at the handshake, a peer without a certificate from `caFile`. Default true: PS3.15 B.1
   * authenticates both ends (node authentication, IHE ATNA); false only asks for one.
   */
  readonly requireClientCert: boolean;
  readonly minVersion: TlsMinVersion;
}

/** The TLS settings of a `dimse` destination or `radscribe echo` (config key `tls`). */
export interface DicomTlsClientConfig {
  /** PEM CA bundle the SCP's certificate must chain to (the system store is not used). */
  readonly caFile: string;
  /** Our certificate and key, presented to the SCP (PS3.15 B.1: both ends authenticate). */
  readonly certFile?: string;
  readonly keyFile?: string;
  /** Name the SCP's certificate must carry (subjectAltName DNS or IP); default the host. */
  readonly serverName?: string;
  readonly minVersion?: TlsMinVersion;
}

function readPem(what: string, file: string): Buffer {
  try {
    return readFileSync(file);
  } catch (err: unknown) {
    const code = (err as NodeJS.ErrnoException).code ?? 'unreadable';
    throw new RadScribeError(ErrorCode.ConfigInvalid, `${what}: cannot read ${file}: ${code}`, { cause: err });
  }
}

/** node:tls server options for a listener; unreadable files are config-invalid, named by `where`. */
export function dicomTlsServerOptions(cfg: DicomTlsListenerConfig, where: string): tls.TlsOptions {
  return {
    cert: readPem(`${where}.certFile`, cfg.certFile),
    key: readPem(`${where}.keyFile`, cfg.keyFile),
    ca: readPem(`${where}.caFile`, cfg.caFile),
    requestCert: true,
    rejectUnauthorized: cfg.requireClientCert,
    minVersion: cfg.minVersion,
    ciphers: DICOM_TLS_CIPHER_STRING,
    honorCipherOrder: true,
    secureOptions: SECURE_OPTIONS,
  };
}

/** node:tls connect options (without host/port) for an SCU. */
export function dicomTlsClientOptions(cfg: DicomTlsClientConfig, host: string, where: string): tls.ConnectionOptions {
  const name = cfg.serverName ?? host;
  return {
    ca: readPem(`${where}.caFile`, cfg.caFile),
    ...(cfg.certFile ? { cert: readPem(`${where}.certFile`, cfg.certFile) } : {}),
    ...(cfg.keyFile ? { key: readPem(`${where}.keyFile`, cfg.keyFile) } : {}),
    // SNI carries DNS names only (RFC 6066 §3); an IP address is checked against the SAN below.
    ...(isIP(name) === 0 ? { servername: name } : {}),
    checkServerIdentity: (_host, cert) => tls.checkServerIdentity(name, cert),
    rejectUnauthorized: true,
    minVersion: cfg.minVersion ?? DEFAULT_TLS_MIN_VERSION,
    ciphers: DICOM_TLS_CIPHER_STRING,
    secureOptions: SECURE_OPTIONS,
  };
}

/**
 * Whether a socket error is the TLS layer refusing (a certificate that does not verify, a name
 * that does not match, an alert from the peer, no common version or suite) rather than the network
 * failing. Such a refusal is configuration trouble that a retry will not fix.
 */
export function isTlsRefusal(err: unknown): boolean {
  const code = (err as { code?: unknown } | undefined)?.code;
  if (typeof code !== 'string') return false;
  return (
    code.startsWith('ERR_SSL_') || code.startsWith('ERR_TLS_') || /CERT|UNABLE_TO_|SELF_SIGNED|_SIGNATURE_/.test(code)
  );
}
