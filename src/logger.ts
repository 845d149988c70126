import winston from 'winston';

/**
 * One JSON root logger (STYLE §2.6). Components take `childLogger(scope)`.
 * Messages are constant strings; variable parts go in fields. PHI never goes in: the redaction
 * format below is a safety net for fields, it does not scan message strings (js-stack.md §10).
 */

/** Field names (camelCase keywords and DICOM JSON tags) that may carry PHI and are always redacted. */
const PHI_KEYS: ReadonlySet<string> = new Set([
  'PatientName',
  'PatientID',
  'PatientBirthDate',
  'PatientSex',
  'PatientAge',
  'PatientAddress',
  'OtherPatientIDs',
  'AccessionNumber',
  'ReferringPhysicianName',
  'InstitutionName',
  'StudyDescription',
  'text',
  'findingText',
  '00100010',
  '00100020',
  '00100030',
  '00100040',
  '00080050',
  '00080090',
  '7FE00010',
  'PixelData',
]);

const REDACTED = '[redacted]';

/** Copy-on-write redaction: never mutates the caller's object. */
export function redact(value: unknown, depth = 0): unknown {
  if (depth > 8 || value === null || typeof value !== 'object') return value;
  if (Array.isArray(value)) return value.map((v) => redact(v, depth + 1));
  if (value instanceof Error || ArrayBuffer.isView(value)) return value;
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(value as Record<string, unknown>)) {
    out[k] = PHI_KEYS.has(k) ? REDACTED : redact(v, depth + 1);
  }
  return out;
}

const redactFormat = winston.format((info) => {
  const copy = redact({ ...info }) as winston.Logform.TransformableInfo;
  // winston keeps level/message under symbols too; carry them over.
  for (const sym of Object.getOwnPropertySymbols(info)) {
    (copy as unknown as Record<symbol, unknown>)[sym] = (info as unknown as Record<symbol, unknown>)[sym];
  }
  return copy;
});

export type Logger = winston.Logger;

let root: winston.Logger | undefined;

export function rootLogger(): winston.Logger {
  if (!root) {
    root = winston.createLogger({
      level: process.env.RADSCRIBE_LOG_LEVEL ?? (process.env.JEST_WORKER_ID ? 'error' : 'info'),
      format: winston.format.combine(
        redactFormat(),
        winston.format.timestamp(),
        winston.format.errors({ stack: true }),
        winston.format.json(),
      ),
      // stderr keeps stdout free for command output (audit list, describe --json).
      transports: [
        new winston.transports.Console({ stderrLevels: ['error', 'warn', 'info', 'debug', 'verbose', 'silly'] }),
      ],
    });
  }
  return root;
}

export function setLogLevel(level: string): void {
  rootLogger().level = level;
}

export function childLogger(component: string, fields: Record<string, unknown> = {}): winston.Logger {
  return rootLogger().child({ component, ...fields });
}
