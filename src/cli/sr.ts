import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { type NaturalDataset, parsePart10 } from '../dicom/dataset.js';
import { buildEncapsulatedPdf } from '../dicom/pdf/encapsulated-pdf.js';
import { loadPdfFonts } from '../dicom/pdf/fonts.js';
import { isSrProfile, SrProfile } from '../dicom/sr/draft-policy.js';
import { buildDraftSr, type DraftSrFinding } from '../dicom/sr/draft-sr.js';
import { ErrorCode, normalizeErrorString, RadScribeError } from '../errors.js';
import { modelDeviceUid } from '../inference/model-identity.js';
import { type Args, boolFlag, type CliCommand, configFrom, flag, requiredFlag, UsageError } from './args.js';

/**
 * `radscribe sr`: write a draft SR (and optionally its PDF companion) for local source files and
 * given texts, without the gateway: for trying profiles, feeding validators and demonstrating output.
 * Algorithm identification comes from the configured model bundle's manifest.json, with the same
 * Device UID the gateway uses (modelDeviceUid).
 */

/** Where `--pdf` writes the companion: `<out minus .dcm>.pdf.dcm` (sr.dcm → sr.pdf.dcm). */
export function pdfCompanionPath(out: string): string {
  return `${out.toLowerCase().endsWith('.dcm') ? out.slice(0, -4) : out}.pdf.dcm`;
}

interface ManifestInfo {
  name: string;
  version: string;
  prompt?: string;
  fixture?: boolean;
  deviceUid?: string;
}

function readManifest(bundle: string): { info: ManifestInfo; bytes: Uint8Array } {
  const file = path.join(bundle, 'manifest.json');
  const bytes = new Uint8Array(readFileSync(file));
  let info: ManifestInfo;
  try {
    info = JSON.parse(Buffer.from(bytes).toString('utf8')) as ManifestInfo;
  } catch (err) {
    throw new RadScribeError(ErrorCode.ConfigInvalid, `sr: ${file} is not JSON: ${normalizeErrorString(err)}`);
  }
  if (typeof info?.name !== 'string' || typeof info.version !== 'string') {
    throw new RadScribeError(ErrorCode.ConfigInvalid, `sr: ${file} lacks name/version`);
  }
  return { info, bytes };
}

async function cmdSr(args: Args): Promise<number> {
  const sources = [...(args.multi.get('source') ?? []), ...args.positional.slice(1)];
  if (sources.length === 0) throw new UsageError('sr: --source <file.dcm> is required');
  const texts = args.multi.get('text') ?? [];
  if (texts.length === 0) throw new UsageError('sr: --text <text> is required');
  if (texts.length !== 1 && texts.length !== sources.length) {
    throw new UsageError(
      `sr: give one --text for all sources or one per source (${sources.length}), not ${texts.length}`,
    );
  }
  const profile = flag(args, 'profile') ?? SrProfile.Report;
  if (!isSrProfile(profile)) throw new UsageError(`sr: --profile must be ${Object.values(SrProfile).join(' or ')}`);
  const out = requiredFlag(args, 'out');
  const withPdf = boolFlag(args, 'pdf');

  const cfg = configFrom(args);
  const { info, bytes } = readManifest(cfg.model.bundle);
  const headers: NaturalDataset[] = sources.map(
    (f) => parsePart10(new Uint8Array(readFileSync(f)), { untilPixelData: true }).dataset,
  );
  // One text per source image, or the single text for every image (each image then gets the same finding).
  const findings: DraftSrFinding[] = headers.map((h, i) => ({
    sopClassUid: String(h.SOPClassUID),
    sopInstanceUid: String(h.SOPInstanceUID),
    text: (texts.length === 1 ? texts[0] : texts[i]) as string,
  }));
  const sr = buildDraftSr({
    sources: headers,
    findings,
    profile,
    algorithm: {
      name: info.name,
      version: info.version,
      manufacturer: 'RadScribe',
      deviceUid: modelDeviceUid(bytes, info.deviceUid),
      ...(typeof info.prompt === 'string' && info.prompt.trim() !== '' ? { parameters: info.prompt } : {}),
      fixture: info.fixture === true,
    },
  });
  writeFileSync(out, sr.part10);
  process.stdout.write(`SR ${sr.sopInstanceUid} (${profile}) written to ${out}\n`);
  // What was not copied verbatim from the source (tags and reasons only: the values are PHI).
  for (const n of sr.sourceAttributeNotes) {
    process.stderr.write(`sr: source attribute ${n.tag} ${n.keyword} ${n.action} (${n.reason})\n`);
  }
  if (withPdf) {
    const pdf = await buildEncapsulatedPdf({ sr, fonts: loadPdfFonts() });
    const pdfOut = pdfCompanionPath(out);
    writeFileSync(pdfOut, pdf.part10);
    process.stdout.write(`PDF ${pdf.sopInstanceUid} written to ${pdfOut}\n`);
  }
  return 0;
}

export const srCommand: CliCommand = {
  name: 'sr',
  usage: ['sr --source <file.dcm>... --text <text> [--text <text>...] [--profile report|air] [--pdf] --out <sr.dcm>'],
  booleanFlags: ['pdf'],
  run: cmdSr,
};
