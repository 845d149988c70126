import { parseMultipart } from '../../../src/pacs/multipart.js';

/**
 * [issue 8] A STOW-RS part is streamed with backpressure: while the part's consumer (the spool file's
 * write stream) does not read, the parser stops pulling from the request, so a 2 GB part never
 * accumulates in memory. The source counts what was pulled from it.
 */
describe('parseMultipart backpressure', () => {
  it('pulls no more than a small window while the part body is not read, then delivers every byte', async () => {
    const boundary = 'b0undary';
    const chunk = Buffer.alloc(64 * 1024, 0x41);
    const chunks = 1024; // 64 MiB body
    let pulled = 0;
    async function* source(): AsyncGenerator<Buffer> {
      const head = Buffer.from(`--${boundary}\r\nContent-Type: application/dicom\r\n\r\n`);
      pulled += head.length;
      yield head;
      for (let i = 0; i < chunks; i++) {
        pulled += chunk.length;
        yield chunk;
      }
      const tail = Buffer.from(`\r\n--${boundary}--\r\n`);
      pulled += tail.length;
      yield tail;
    }
    let received = 0;
    let parts = 0;
    for await (const part of parseMultipart(source(), boundary, { maxPartBytes: 1024 ** 3 })) {
      parts++;
      // A stalled consumer: let the event loop run while nobody reads the body.
      await new Promise((r) => setTimeout(r, 100));
      const pulledWhileStalled = pulled;
      expect(pulledWhileStalled).toBeLessThan(1024 * 1024);
      for await (const c of part.body) received += (c as Buffer).length;
    }
    expect(parts).toBe(1);
    expect(received).toBe(chunk.length * chunks);
    expect(pulled).toBeGreaterThan(chunk.length * chunks);
  });
});
