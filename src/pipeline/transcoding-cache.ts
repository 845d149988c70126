import { mkdirSync, readdirSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { normalizeErrorString } from '../errors.js';
import { ReceivedVia } from '../ingest/types.js';
import { childLogger } from '../logger.js';
import type { RemoteInstanceRef } from './transcode-fallback.js';

/** Default bound of the cache: enough for a few large multi-frame copies, never the whole disk. */
export const DEFAULT_TRANSCODING_CACHE_MAX_BYTES = 2 * 1024 ** 3;
/** Default bound on the number of cached copies. */
export const DEFAULT_TRANSCODING_CACHE_MAX_ENTRIES = 10_000;

/** Which stored instance to transcode: one retrieved by WADO-RS names its node in `actor`. */
export interface TranscodableInstance {
  readonly sopInstanceUid: string;
  readonly seriesInstanceUid: string;
  readonly receivedVia?: string;
  readonly actor?: string | null;
}

export interface TranscodingCacheOptions {
  /** Folder of the copies (the gateway uses <dataDir>/transcoded). */
  readonly dir: string;
  /**
   * Fetches the Explicit VR Little Endian copy from `node` (retrieveTranscoded through that node's
   * DICOMweb client); undefined when the node is not configured, so the instance has no source.
   */
  readonly fetch: (node: string, ref: RemoteInstanceRef) => Promise<Uint8Array | undefined>;
  readonly maxBytes?: number;
  readonly maxEntries?: number;
}

interface Entry {
  readonly file: string;
  readonly bytes: number;
}

/**
 * Copies of instances transcoded by the PACS they came from (issue #3: the fallback for transfer
 * syntaxes no local decoder handles), kept as files for the image-prep worker. Bounded in bytes and
 * entries; the least recently used copy goes first. Copies already on disk at start count against
 * the bound in modification-time order, so a restart does not forget the cache.
 */
export class TranscodingCache {
  readonly dir: string;
  readonly maxBytes: number;
  readonly maxEntries: number;
  private readonly log = childLogger('transcoding-cache');
  /** Insertion order is recency order: a hit is re-inserted at the end. */
  private readonly entries = new Map<string, Entry>();
  private readonly inFlight = new Map<string, Promise<string | undefined>>();
  private total = 0;

  constructor(private readonly opts: TranscodingCacheOptions) {
    this.dir = opts.dir;
    this.maxBytes = opts.maxBytes ?? DEFAULT_TRANSCODING_CACHE_MAX_BYTES;
    this.maxEntries = Math.max(1, opts.maxEntries ?? DEFAULT_TRANSCODING_CACHE_MAX_ENTRIES);
    mkdirSync(this.dir, { recursive: true });
    const found = readdirSync(this.dir)
      .filter((f) => f.endsWith('.dcm'))
      .map((f) => {
        const file = path.join(this.dir, f);
        const st = statSync(file);
        return { key: f.slice(0, -4), file, bytes: st.size, mtime: st.mtimeMs };
      })
      .sort((a, b) => a.mtime - b.mtime);
    for (const f of found) this.remember(f.key, { file: f.file, bytes: f.bytes });
    this.evict();
  }

  /** Number of copies and their total size, for tests and metrics. */
  get size(): { entries: number; bytes: number } {
    return { entries: this.entries.size, bytes: this.total };
  }

  /**
   * Path of a transcoded copy of `inst`, fetching it on a miss; undefined when the instance did not
   * come from a configured node by WADO-RS (a STOW-RS upload has no PACS to ask). The shape is
   * describe-images' `transcode` dependency.
   */
  transcode(inst: TranscodableInstance, where: { studyInstanceUid: string }): Promise<string | undefined> {
    if (inst.receivedVia !== ReceivedVia.WadoRs || !inst.actor) return Promise.resolve(undefined);
    const key = inst.sopInstanceUid;
    const hit = this.entries.get(key);
    if (hit) {
      this.entries.delete(key);
      this.entries.set(key, hit);
      return Promise.resolve(hit.file);
    }
    const pending = this.inFlight.get(key);
    if (pending) return pending;
    const node = inst.actor;
    const p = (async () => {
      const bytes = await this.opts.fetch(node, {
        studyInstanceUid: where.studyInstanceUid,
        seriesInstanceUid: inst.seriesInstanceUid,
        sopInstanceUid: inst.sopInstanceUid,
      });
      if (!bytes) return undefined;
      const file = path.join(this.dir, `${key}.dcm`);
      writeFileSync(`${file}.tmp`, bytes);
      renameSync(`${file}.tmp`, file);
      this.remember(key, { file, bytes: bytes.byteLength });
      this.evict(key);
      return file;
    })().finally(() => this.inFlight.delete(key));
    this.inFlight.set(key, p);
    return p;
  }

  private remember(key: string, e: Entry): void {
    const old = this.entries.get(key);
    if (old) this.total -= old.bytes;
    this.entries.delete(key);
    this.entries.set(key, e);
    this.total += e.bytes;
  }

  /** Drops least recently used copies until within both bounds; never the one just written (`keep`). */
  private evict(keep?: string): void {
    for (const [key, e] of this.entries) {
      if (this.total <= this.maxBytes && this.entries.size <= this.maxEntries) return;
      if (key === keep) continue;
      this.entries.delete(key);
      this.total -= e.bytes;
      try {
        rmSync(e.file, { force: true });
      } catch (err: unknown) {
        this.log.warn('could not delete a transcoded copy', { error: normalizeErrorString(err) });
      }
    }
  }
}
