import { createHash, randomUUID } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { readdir, rm } from 'node:fs/promises';
import path from 'node:path';
import type { Readable } from 'node:stream';
import { Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { ReceivedFile } from '../ingest/types.js';

/**
 * Stream one received instance into a temporary file, hashing as it goes, so that neither STOW-RS
 * nor WADO-RS retrieval ever holds an instance in memory. The caller owns the file afterwards and
 * hands it to `InstanceSink.accept` (which moves or deletes it); on any error the partial file is
 * removed here, so an aborted upload leaves nothing behind.
 */
export async function spoolToTempFile(body: Readable, tmpDir: string, prefix: string): Promise<ReceivedFile> {
  const filePath = path.join(tmpDir, `${prefix}-${randomUUID()}.part`);
  const hash = createHash('sha256');
  let sizeBytes = 0;
  const tap = new Transform({
    transform(chunk: Buffer, _enc, cb) {
      hash.update(chunk);
      sizeBytes += chunk.length;
      cb(null, chunk);
    },
  });
  try {
    // 'wx': never overwrite; flags keep a hostile name from following a symlink (random name anyway).
    await pipeline(body, tap, createWriteStream(filePath, { flags: 'wx', mode: 0o600 }));
  } catch (err: unknown) {
    await rm(filePath, { force: true });
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
