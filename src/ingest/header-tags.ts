import { createReadStream } from 'node:fs';
import { stat } from 'node:fs/promises';
import { instanceIdentity } from '../dicom/dataset.js';
import { readPart10Header } from '../dicom/header-reader.js';
import { DEFAULT_DICOM_LIMITS, type DicomLimits } from '../dicom/limits.js';
import { INGEST_HEADER_TAGS, instanceHeaderOf, type ReceivedHeader } from './received-header.js';

/**
 * The attributes routing rules name in `tags` (src/config/routing-rules.ts), read from one file's
 * header on demand. Why not a JSONB column filled at ingest: the tags a rule names are known only
 * from the configuration of the day, and a rule added later must see studies already received (the
 * tester too); a column would need a backfill of every stored file at each config change. Reading
 * one header per series when a study is routed costs one bounded streaming read (the header reader
 * stops at Pixel Data and decodes only the tags asked for; tens of KB for a CT header), so a
 * 500-instance CT study of 4 series costs 4 header reads, not 500.
 */

const READ_CHUNK_BYTES = 64 * 1024;

function hexTag(t: string): number {
  return Number.parseInt(t, 16);
}

/** A raw dcmjs element's values as text: strings and numbers as written, PN by its Alphabetic group. */
function textValues(el: { vr: string; Value?: unknown[] } | undefined): string[] | null {
  if (!el) return null;
  if (el.vr === 'SQ' || el.vr === 'OB' || el.vr === 'OW' || el.vr === 'UN' || el.vr === 'OF' || el.vr === 'OD')
    return [];
  const out: string[] = [];
  for (const v of el.Value ?? []) {
    if (typeof v === 'string') out.push(v.trim());
    else if (typeof v === 'number') out.push(String(v));
    else if (v && typeof v === 'object' && 'Alphabetic' in v)
      out.push(String((v as { Alphabetic: unknown }).Alphabetic ?? ''));
  }
  return out;
}

export interface HeaderWithTags extends ReceivedHeader {
  /** Per tag asked for (8 hex digits): its values as text, [] when present without text, null when absent. */
  readonly tags: Record<string, string[] | null>;
}

/**
 * Read a Part 10 file's header (the ingest columns, plus `tags`), without its pixels. Throws as
 * readPart10Header does (dicom-invalid, dicom-hostile).
 */
export async function readHeaderTags(
  filePath: string,
  tags: readonly string[],
  options: { readonly limits?: DicomLimits } = {},
): Promise<HeaderWithTags> {
  const { size } = await stat(filePath);
  const keep = new Set<number>(INGEST_HEADER_TAGS);
  for (const t of tags) keep.add(hexTag(t));
  const h = await readPart10Header(createReadStream(filePath, { highWaterMark: READ_CHUNK_BYTES }), {
    limits: options.limits ?? DEFAULT_DICOM_LIMITS,
    totalBytes: size,
    keepTopLevel: keep,
  });
  const identity = instanceIdentity(h.instance);
  const dict = h.instance.dict as Record<string, { vr: string; Value?: unknown[] } | undefined>;
  const out: Record<string, string[] | null> = {};
  for (const t of tags) out[t] = textValues(dict[t]);
  return { identity, header: instanceHeaderOf(h, identity), sizeBytes: size, tags: out };
}
