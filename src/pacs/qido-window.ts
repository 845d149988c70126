/**
 * StudyDate / StudyTime match keys for one search window (PS3.18 §8.3.4.1; range matching PS3.4
 * C.2.2.2.5). Without the extended negotiation of combined date-time matching (PS3.4 C.2.2.2.5.1;
 * QIDO-RS has no such negotiation), StudyDate and StudyTime ranges are matched independently, so a
 * window across midnight cannot be one query: it becomes the first day from its start time, the
 * whole days between, and the last day up to its end time.
 *
 * DA and TM carry no time zone (PS3.5 §6.2: they are the modality's local time; Timezone Offset From
 * UTC (0008,0201) is rarely sent and not matchable), so the window is written in the gateway
 * process's local time (TZ): run the gateway in the PACS's zone, and keep the overlap above any
 * clock difference.
 */
export interface WindowMatchKeys {
  readonly StudyDate: string;
  readonly StudyTime?: string;
}

const pad = (n: number, w = 2): string => String(n).padStart(w, '0');

/** DA (PS3.5 Table 6.2-1), local time. */
export function toDA(d: Date): string {
  return `${pad(d.getFullYear(), 4)}${pad(d.getMonth() + 1)}${pad(d.getDate())}`;
}

/** TM HHMMSS (PS3.5 Table 6.2-1), local time, seconds truncated. */
export function toTM(d: Date): string {
  return `${pad(d.getHours())}${pad(d.getMinutes())}${pad(d.getSeconds())}`;
}

/** Last TM of a day: values with a fraction of the last second still match. */
const END_OF_DAY = '235959.999999';
const START_OF_DAY = '000000';

/**
 * One query's part of a window: its match keys and the instants they cover. `byDay`: StudyDate only
 * (whole days, no StudyTime key: studies without a StudyTime match too).
 */
export interface WindowPart {
  readonly keys: WindowMatchKeys;
  readonly from: Date;
  readonly to: Date;
  readonly byDay: boolean;
}

function startOfDay(d: Date, plusDays = 0): Date {
  const n = new Date(d);
  n.setHours(0, 0, 0, 0);
  n.setDate(n.getDate() + plusDays);
  return n;
}

function endOfDay(d: Date): Date {
  const n = new Date(d);
  n.setHours(23, 59, 59, 999);
  return n;
}

/** Whole days from `from`'s day to `to`'s day, as one StudyDate range. */
export function dayPart(from: Date, to: Date): WindowPart {
  const a = toDA(from);
  const b = toDA(to);
  return { keys: { StudyDate: a === b ? a : `${a}-${b}` }, from: startOfDay(from), to: endOfDay(to), byDay: true };
}

function timePart(from: Date, to: Date): WindowPart {
  const lo = toTM(from);
  const hi = to.getTime() === endOfDay(to).getTime() ? END_OF_DAY : `${toTM(to)}.999999`;
  const keys =
    lo === START_OF_DAY && hi === END_OF_DAY
      ? { StudyDate: toDA(from) }
      : { StudyDate: toDA(from), StudyTime: `${lo}-${hi}` };
  return { keys, from, to, byDay: false };
}

/** The parts of [from, to]: the first day from its start time, the whole days between, the last day to its end. */
export function windowParts(from: Date, to: Date): WindowPart[] {
  const start = from.getTime() > to.getTime() ? to : from;
  if (toDA(start) === toDA(to)) return [timePart(start, to)];
  const parts: WindowPart[] = [timePart(start, endOfDay(start))];
  const firstWhole = startOfDay(start, 1);
  const lastWhole = startOfDay(to, -1);
  if (firstWhole.getTime() <= lastWhole.getTime()) parts.push(dayPart(firstWhole, lastWhole));
  parts.push(timePart(startOfDay(to), to));
  return parts;
}

export function windowMatchKeys(from: Date, to: Date): WindowMatchKeys[] {
  return windowParts(from, to).map((p) => p.keys);
}

/** Narrowest span a part is split to (TM here has whole seconds). */
const MIN_SPLIT_MS = 2_000;

/**
 * A part whose answer reached the PACS's maximum number of results, in two halves that are searched
 * instead: a day range by days, one day by time, a time range at its midpoint. Null when it cannot
 * be narrowed further (two seconds).
 */
export function splitPart(p: WindowPart): WindowPart[] | null {
  if (p.byDay) {
    if (toDA(p.from) === toDA(p.to))
      return [timePart(startOfDay(p.from), endOfDay(p.from))].flatMap((x) => splitPart(x) ?? [x]);
    const days = Math.round((startOfDay(p.to).getTime() - startOfDay(p.from).getTime()) / 86_400_000);
    const mid = startOfDay(p.from, Math.floor(days / 2));
    return [dayPart(p.from, mid), dayPart(startOfDay(mid, 1), p.to)];
  }
  const span = p.to.getTime() - p.from.getTime();
  if (span < MIN_SPLIT_MS) return null;
  const mid = new Date(p.from.getTime() + Math.floor(span / 2));
  return [timePart(p.from, mid), timePart(new Date(mid.getTime() + 1000 - (mid.getTime() % 1000)), p.to)];
}
