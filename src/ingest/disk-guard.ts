import { statfs } from 'node:fs/promises';
import { ErrorCode, errorCodeOf, normalizeErrorString, RadScribeError } from '../errors.js';

/**
 * Free space of the instance store's file system, checked before anything of a request or an
 * instance is written (issue 9: a full disk must refuse with 507 / 0xA700 up front, not fail
 * half-way with 503). Two limits, both kept free after the write:
 * - `reserveBytes`, an absolute reserve (room for the database, logs, a running export);
 * - `watermarkPercent`, a share of the file system's size (MONAI Informatics Gateway's storage
 *   watermark: accept only while usage stays below it).
 * The larger of the two applies. Refusals are HTTP 507 Insufficient Storage (RFC 4918 §11.5) for a
 * whole STOW-RS request and Failure Reason 0xA700 Out of Resources (PS3.4 B.2.3) per instance.
 */

/** 1 GiB kept free by default: a PGlite checkpoint or a 500 MB multi-frame instance still fits. */
export const DEFAULT_STORAGE_RESERVE_BYTES = 1024 ** 3;
/** Keep 5 % of the file system free by default (ext4 reserves 5 % for root; we stop before it). */
export const DEFAULT_STORAGE_WATERMARK_PERCENT = 5;

/** What fs.statfs says, in the units the guard needs (`bavail`: blocks an unprivileged writer may use). */
export interface FileSystemSpace {
  readonly freeBytes: number;
  readonly totalBytes: number;
}

export interface DiskGuardOptions {
  /** A directory on the file system to watch (the instance store's root). */
  readonly dir: string;
  readonly reserveBytes?: number;
  readonly watermarkPercent?: number;
  /** How free space is measured; default fs.statfs. Tests pass a real small file system instead. */
  readonly space?: (dir: string) => Promise<FileSystemSpace>;
}

/** The result of one check, for logs, audit detail and metrics. */
export interface DiskCheck {
  readonly ok: boolean;
  readonly freeBytes: number;
  readonly totalBytes: number;
  /** What must stay free after the write: max(reserve, watermark share of the total). */
  readonly minFreeBytes: number;
  /** Bytes the caller is about to write (0 when they are already on this file system). */
  readonly incomingBytes: number;
}

export async function statfsSpace(dir: string): Promise<FileSystemSpace> {
  // bavail, not bfree: blocks reserved for root are not ours to use even when we run as root.
  const s = await statfs(dir);
  return { freeBytes: Number(s.bavail) * Number(s.bsize), totalBytes: Number(s.blocks) * Number(s.bsize) };
}

export class DiskGuard {
  readonly dir: string;
  readonly reserveBytes: number;
  readonly watermarkPercent: number;
  readonly #space: (dir: string) => Promise<FileSystemSpace>;

  constructor(options: DiskGuardOptions) {
    this.dir = options.dir;
    this.reserveBytes = options.reserveBytes ?? DEFAULT_STORAGE_RESERVE_BYTES;
    this.watermarkPercent = options.watermarkPercent ?? DEFAULT_STORAGE_WATERMARK_PERCENT;
    if (!(this.reserveBytes >= 0) || !(this.watermarkPercent >= 0 && this.watermarkPercent < 100))
      throw new RadScribeError(ErrorCode.ConfigInvalid, 'disk guard: reserve ≥ 0 and 0 ≤ watermark < 100 required');
    this.#space = options.space ?? statfsSpace;
  }

  /** Measure now; `incomingBytes` not yet on this file system must fit above the limit. */
  async check(incomingBytes = 0): Promise<DiskCheck> {
    let space: FileSystemSpace;
    try {
      space = await this.#space(this.dir);
    } catch (err: unknown) {
      // The store's directory vanished or cannot be read: nothing can be stored there either.
      const code = errorCodeOf(err);
      throw new RadScribeError(
        code === ErrorCode.Internal ? ErrorCode.OutOfResources : code,
        `free space of the instance store: ${normalizeErrorString(err)}`,
        { cause: err },
      );
    }
    const minFreeBytes = Math.max(this.reserveBytes, Math.ceil((space.totalBytes * this.watermarkPercent) / 100));
    const incoming = Math.max(0, incomingBytes);
    return { ok: space.freeBytes - incoming >= minFreeBytes, ...space, minFreeBytes, incomingBytes: incoming };
  }

  /** Like check(), but a refusal throws StorageFull (HTTP 507 through the app's error handler). */
  async require(incomingBytes = 0): Promise<DiskCheck> {
    const c = await this.check(incomingBytes);
    if (!c.ok) throw new StorageFullError(c);
    return c;
  }
}

/** A refusal by the guard; carries the measurement (sizes only, no paths, so clients may see it). */
export class StorageFullError extends RadScribeError {
  override name = 'StorageFullError';
  readonly check: DiskCheck;
  constructor(check: DiskCheck) {
    super(
      ErrorCode.StorageFull,
      `insufficient storage: ${check.freeBytes} bytes free, ${check.incomingBytes} incoming, ${check.minFreeBytes} must stay free`,
    );
    this.check = check;
  }
}
