import type { InstanceHeader, StoredInstance } from '../ingest/types.js';
import { ReceivedVia } from '../ingest/types.js';
import type { SeriesFacts, StudyFacts } from './routing.js';

/**
 * What routing rules are evaluated against (src/pipeline/routing.ts), from the rows ingest stored
 * (instances header columns: modality, SOP class, body part, series description, called AE, and the
 * calling AE as the actor of a C-STORE) and, for `tags` conditions only, one header read per series.
 */

/** Reads the named tags of one stored instance (src/ingest/header-tags.ts); rejects when it cannot. */
export type TagReader = (inst: StoredInstance, tags: readonly string[]) => Promise<Record<string, string[] | null>>;

const distinct = (xs: readonly (string | null | undefined)[]): string[] => [
  ...new Set(xs.filter((x): x is string => typeof x === 'string' && x !== '')),
];

/**
 * The study's facts from its stored instances. `tags`: the tags the rules name (routing-rules.ts
 * `referencedTags`); with none, no file is opened. The tags of a series are those of its first
 * instance by Instance Number (then SOP Instance UID): attributes rules route on (Image Type,
 * Protocol Name, a private tag) are the same across a series in practice; a series whose header
 * cannot be read has no tag values, so its tag conditions do not hold (the tester says why).
 */
export async function studyFactsOf(
  instances: readonly StoredInstance[],
  tags: readonly string[] = [],
  readTags?: TagReader,
): Promise<StudyFacts> {
  const bySeries = new Map<string, StoredInstance[]>();
  for (const i of instances) {
    const list = bySeries.get(i.seriesInstanceUid) ?? [];
    list.push(i);
    bySeries.set(i.seriesInstanceUid, list);
  }
  const series: SeriesFacts[] = [];
  for (const [uid, list] of [...bySeries].sort(([a], [b]) => a.localeCompare(b))) {
    let tagValues: Record<string, string[] | null> | undefined;
    if (tags.length > 0 && readTags) {
      const first = [...list].sort(
        (a, b) => (a.instanceNumber ?? 0) - (b.instanceNumber ?? 0) || a.sopInstanceUid.localeCompare(b.sopInstanceUid),
      )[0] as StoredInstance;
      tagValues = await readTags(first, tags).catch(() => undefined);
    }
    series.push({
      seriesInstanceUid: uid,
      modalities: distinct(list.map((i) => i.modality)),
      sopClassUids: distinct(list.map((i) => i.sopClassUid)),
      bodyPartsExamined: distinct(list.map((i) => i.bodyPartExamined)),
      seriesDescriptions: distinct(list.map((i) => i.seriesDescription)),
      ...(tagValues ? { tags: tagValues } : {}),
    });
  }
  return {
    ...(instances[0] ? { studyInstanceUid: instances[0].studyInstanceUid } : {}),
    // The actor of a C-STORE receipt is its Calling AE Title (src/dimse/storage-scp.ts).
    callingAeTitles: distinct(instances.filter((i) => i.receivedVia === ReceivedVia.CStore).map((i) => i.actor)),
    calledAeTitles: distinct(instances.map((i) => i.calledAeTitle)),
    series,
  };
}

/** One file's facts (the rule tester given a DICOM file): one series; AE titles as the caller says. */
export function fileFactsOf(
  header: InstanceHeader,
  studyInstanceUid: string,
  tags: Record<string, string[] | null>,
  ae: { readonly callingAeTitle?: string; readonly calledAeTitle?: string } = {},
): StudyFacts {
  return {
    studyInstanceUid,
    callingAeTitles: ae.callingAeTitle ? [ae.callingAeTitle] : [],
    calledAeTitles: ae.calledAeTitle ? [ae.calledAeTitle] : [],
    series: [
      {
        seriesInstanceUid: header.seriesInstanceUid,
        modalities: distinct([header.modality]),
        sopClassUids: distinct([header.sopClassUid]),
        bodyPartsExamined: distinct([header.bodyPartExamined]),
        seriesDescriptions: distinct([header.seriesDescription]),
        tags,
      },
    ],
  };
}
