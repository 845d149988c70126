import { execFileSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import path from 'node:path';

/**
 * A small PKI made with the openssl binary, for the DICOM TLS and HTTPS tests (PS3.15 B.1: both ends carry
 * certificates). In `dir`:
 *  - ca.pem/ca.key: the hospital CA both ends trust;
 *  - server.pem/.key: an SCP certificate for 127.0.0.1 and pacs.test (subjectAltName), from ca;
 *  - client.pem/.key: a modality's certificate (CN MODALITY1), from ca;
 *  - rogue-ca.pem: another CA; rogue-client.pem/.key and rogue-server.pem/.key (same names and
 *    SANs as the good ones) come from it, so only the issuer tells them apart.
 * EC P-256 keys (fast to make; DCMTK's BCP 195 profiles take ECDSA). Valid two days.
 */
export function makeDicomPki(dir: string): void {
  const ssl = (...args: string[]) => execFileSync('openssl', args, { cwd: dir, stdio: 'pipe' });
  const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes'];
  writeFileSync(path.join(dir, 'server.ext'), 'subjectAltName=IP:127.0.0.1,DNS:pacs.test\n');
  writeFileSync(path.join(dir, 'client.ext'), 'extendedKeyUsage=clientAuth\n');
  for (const ca of ['ca', 'rogue-ca']) {
    ssl(
      'req',
      '-x509',
      ...ec,
      '-days',
      '2',
      '-subj',
      `/CN=RadScribe test ${ca}`,
      '-keyout',
      `${ca}.key`,
      '-out',
      `${ca}.pem`,
    );
    const prefix = ca === 'ca' ? '' : 'rogue-';
    for (const [name, cn] of [
      ['server', '127.0.0.1'],
      ['client', 'MODALITY1'],
    ] as const) {
      const base = `${prefix}${name}`;
      ssl('req', ...ec, '-subj', `/CN=${cn}`, '-keyout', `${base}.key`, '-out', `${base}.csr`);
      ssl(
        'x509',
        '-req',
        '-in',
        `${base}.csr`,
        '-CA',
        `${ca}.pem`,
        '-CAkey',
        `${ca}.key`,
        '-CAcreateserial',
        '-days',
        '2',
        '-extfile',
        `${name}.ext`,
        '-out',
        `${base}.pem`,
      );
    }
  }
}
