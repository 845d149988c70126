import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { ErrorCode, errorCodeOf } from '../../../src/errors.js';
import { DicomwebClient } from '../../../src/pacs/dicomweb-client.js';

/**
 * Failures reaching a remote PACS are classified where they happen, as pacs-unavailable (retried),
 * never as a database problem (issue 8): refused connection, a body cut off mid-stream.
 */
describe('DicomwebClient error classification', () => {
  let server: http.Server;
  let base: string;
  beforeAll(async () => {
    server = http.createServer((req, res) => {
      if (req.url?.startsWith('/studies/1.2/series/1.3/instances/1.4')) {
        // Multipart headers and half a part, then the connection drops.
        res.writeHead(200, { 'content-type': 'multipart/related; type="application/dicom"; boundary=b' });
        res.write('--b\r\nContent-Type: application/dicom\r\n\r\n');
        res.write(Buffer.alloc(1000, 1));
        setTimeout(() => res.socket?.destroy(), 20);
      } else {
        res.writeHead(200, { 'content-type': 'application/dicom+json', 'content-length': '1000' });
        res.write('[{"0020000D":');
        setTimeout(() => res.socket?.destroy(), 20);
      }
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  afterAll(() => new Promise<void>((r) => server.close(() => r())));

  it('a refused connection is pacs-unavailable', async () => {
    const port = (server.address() as AddressInfo).port;
    // A port that was just free: nothing listens there.
    const probe = http.createServer();
    await new Promise<void>((r) => probe.listen(0, '127.0.0.1', r));
    const dead = (probe.address() as AddressInfo).port;
    await new Promise<void>((r) => probe.close(() => r()));
    expect(dead).not.toBe(port);
    const err = await new DicomwebClient({ baseUrl: `http://127.0.0.1:${dead}` }).searchForStudies().catch((e) => e);
    expect(errorCodeOf(err)).toBe(ErrorCode.PacsUnavailable);
    expect(String(err.message)).toContain('ECONNREFUSED');
  });

  it('a search body cut off is pacs-unavailable', async () => {
    const err = await new DicomwebClient({ baseUrl: base }).searchForStudies().catch((e) => e);
    expect(errorCodeOf(err)).toBe(ErrorCode.PacsUnavailable);
  });

  it('a retrieve body cut off mid-part is pacs-unavailable, also inside the caller’s handler', async () => {
    const err = await new DicomwebClient({ baseUrl: base })
      .retrieveInstance('1.2', '1.3', '1.4', {
        onInstance: async (body) => {
          for await (const _ of body) {
            // read until the connection drops
          }
        },
      })
      .catch((e) => e);
    expect(errorCodeOf(err)).toBe(ErrorCode.PacsUnavailable);
  });
});
