import { createHash, randomUUID } from 'node:crypto';
import { type FileHandle, open, readdir, rm } from 'node:fs/promises';
import path from 'node:path';
import type { Readable } from 'node:stream';
import type { ReceivedFile } from '../ingest/types.js';

/**
 * Bytes of a part collected before a write is started while none is in flight, and the most held
 * (in the source's own chunks, never copied) while one is: a 519 KiB instance costs open, three or
 * four writev(2) and close, the last write after the body ends is small (it is what the next part
 * waits for), and a slow disk stops the reader (back-pressure) at 1 MiB per part.
 */
export const DEFAULT_SPOOL_WRITE_BYTES = 128 * 1024;
export const DEFAULT_SPOOL_MAX_PENDING_BYTES = 1024 * 1024;

/** writev all of `bufs` at the file position, going on after a short write. */
async function writeAll(fh: FileHandle, bufs: Buffer[]): Promise<void> {
  let rest = bufs;
  while (rest.length > 0) {
    const { bytesWritten } = await fh.writev(rest);
    let n = bytesWritten;
    let i = 0;
    while (i < rest.length && n >= (rest[i] as Buffer).length) n -= (rest[i++] as Buffer).length;
    rest = rest.slice(i);
    if (n > 0 && rest.length > 0) rest[0] = (rest[0] as Buffer).subarray(n);
  }
}

/**
 * Stream one received instance into a temporary file, hashing as it goes, so that neither STOW-RS
 * nor WADO-RS retrieval ever holds an instance in memory. The caller owns the file afterwards and
 * hands it to `InstanceSink.accept` (which moves or deletes it); on any error the partial file is
 * removed here, so an aborted upload leaves nothing behind. The body's chunks are hashed and
 * written as they are (gathered writes, one in flight while the next chunks arrive), no copy.
 */
export async function spoolToTempFile(body: Readable, tmpDir: string, prefix: string): Promise<ReceivedFile> {
  const filePath = path.join(tmpDir, `${prefix}-${randomUUID()}.part`);
  const hash = createHash('sha256');
  let sizeBytes = 0;
  // 'wx': never overwrite; flags keep a hostile name from following a symlink (random name anyway).
  // The open runs while the first chunks arrive (hashed and held) rather than before them; its
  // failure is taken by the first write or at the end.
  const opening = open(filePath, 'wx', 0o600);
  opening.catch(() => undefined);
  let writing: Promise<void> | undefined;
  let writeError: unknown;
  let pending: Buffer[] = [];
  let pendingBytes = 0;
  const start = (): void => {
    const bufs = pending;
    pending = [];
    pendingBytes = 0;
    const prev = writing;
    const p: Promise<void> = (async () => {
      await prev;
      await writeAll(await opening, bufs);
    })().then(
      () => {
        if (writing === p) writing = undefined;
      },
      (err: unknown) => {
        writeError ??= err;
        if (writing === p) writing = undefined;
      },
    );
    writing = p;
  };
  try {
    for await (const c of body) {
      const chunk = c as Buffer;
      hash.update(chunk);
      sizeBytes += chunk.length;
      pending.push(chunk);
      pendingBytes += chunk.length;
      if (writing !== undefined && pendingBytes >= DEFAULT_SPOOL_MAX_PENDING_BYTES) await writing;
      if (writeError !== undefined) throw writeError;
      if (writing === undefined && pendingBytes >= DEFAULT_SPOOL_WRITE_BYTES) start();
    }
    if (pending.length > 0) start();
    await writing;
    if (writeError !== undefined) throw writeError;
    await (await opening).close();
  } catch (err: unknown) {
    // No write may still be running when the file goes; a file we did not create is not ours to remove.
    await writing;
    const fh = await opening.catch(() => undefined);
    if (!body.destroyed) body.destroy();
    if (fh) {
      await fh.close().catch(() => undefined);
      await rm(filePath, { force: true });
    }
    throw err;
  }
  return { path: filePath, sizeBytes, sha256: hash.digest('hex') };
}

/** Remove a temp file the sink did not take (idempotent). */
export async function discardTempFile(file: ReceivedFile | string): Promise<void> {
  await rm(typeof file === 'string' ? file : file.path, { force: true });
}

/**
 * Read a part that will not be kept to its end, hashing it, so a refusal can be audited with the
 * hash of what was sent (never the bytes). A body that errors (over its size cap, cut off) still
 * resolves, with the error, after what arrived.
 */
export async function discardHashing(body: Readable): Promise<{ sha256: string; sizeBytes: number; error?: unknown }> {
  const hash = createHash('sha256');
  let sizeBytes = 0;
  try {
    for await (const chunk of body) {
      hash.update(chunk as Buffer);
      sizeBytes += (chunk as Buffer).length;
    }
    return { sha256: hash.digest('hex'), sizeBytes };
  } catch (error: unknown) {
    return { sha256: hash.digest('hex'), sizeBytes, error };
  }
}

/**
 * Spool files of a process that died mid-upload (kill -9, power loss) are never handed to a sink
 * and nothing else removes them. Called once at start-up, before the front ends accept anything:
 * none of the files can belong to a live request of this gateway, and nothing in them was
 * acknowledged (an instance is acknowledged only once the store moved it). Returns how many went.
 */
export async function removeStaleSpoolFiles(tmpDir: string): Promise<number> {
  let removed = 0;
  for (const name of await readdir(tmpDir)) {
    if (!name.endsWith('.part')) continue;
    await rm(path.join(tmpDir, name), { force: true });
    removed++;
  }
  return removed;
}
