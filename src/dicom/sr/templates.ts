import { SrValidationError } from '../../errors.js';
import { assertCode, type Code, Codes } from './coding.js';
import {
  CodeContentItem,
  ContainerContentItem,
  type ContentItem,
  ContinuityOfContent,
  ImageContentItem,
  RelationshipType,
  TextContentItem,
  UidRefContentItem,
} from './content-items.js';
import { isShortOrLongString } from './vr.js';

/**
 * SR templates, one class per TID (PS3.16 Annex A; modelled on highdicom `sr/templates.py`). A template
 * is an ordered list of content items that its parent includes; constructors validate their arguments.
 */
export abstract class Template {
  abstract readonly contentItems: readonly ContentItem[];
}

/** LO: 1–64 characters, no backslash or control characters (PS3.5 Table 6.2-1). */
function checkLongString(what: string, v: unknown): string {
  if (!isShortOrLongString(v, 64)) {
    throw new SrValidationError(
      `${what} must be a non-empty LO string (≤ 64 characters, no backslash or control characters)`,
    );
  }
  return v;
}

function checkNonEmptyText(what: string, v: unknown): string {
  if (typeof v !== 'string' || v.trim().length === 0) throw new SrValidationError(`${what} must be a non-empty string`);
  return v;
}

/**
 * TID 1204 Language of Content Item and Descendants: one HAS CONCEPT MOD CODE (121049, DCM) whose value
 * comes from CID 5000 (a BCP 47 tag, scheme RFC5646).
 */
export class LanguageOfContentItemAndDescendants extends Template {
  readonly language: Code;
  readonly contentItems: readonly ContentItem[];

  constructor(opts: { language?: Code } = {}) {
    super();
    this.language = assertCode('LanguageOfContentItemAndDescendants language', opts.language ?? Codes.EnglishUS);
    this.contentItems = [
      new CodeContentItem({
        name: Codes.LanguageOfContentItemAndDescendants,
        value: this.language,
        relationshipType: RelationshipType.HAS_CONCEPT_MOD,
      }),
    ];
  }
}

/**
 * TID 1004 Device Observer Identifying Attributes: Device Observer UID (mandatory) plus optional name,
 * manufacturer, model name and serial number, all HAS OBS CONTEXT.
 */
export class DeviceObserverIdentifyingAttributes extends Template {
  readonly uid: string;
  readonly contentItems: readonly ContentItem[];

  constructor(opts: { uid: string; name?: string; manufacturer?: string; modelName?: string; serialNumber?: string }) {
    super();
    const rel = RelationshipType.HAS_OBS_CONTEXT;
    // UidRefContentItem validates the UID and throws SrValidationError naming it.
    const items: ContentItem[] = [
      new UidRefContentItem({ name: Codes.DeviceObserverUid, value: opts.uid, relationshipType: rel }),
    ];
    this.uid = opts.uid;
    const texts: Array<[Code, string | undefined, string]> = [
      [Codes.DeviceObserverName, opts.name, 'name'],
      [Codes.DeviceObserverManufacturer, opts.manufacturer, 'manufacturer'],
      [Codes.DeviceObserverModelName, opts.modelName, 'modelName'],
      [Codes.DeviceObserverSerialNumber, opts.serialNumber, 'serialNumber'],
    ];
    for (const [name, value, field] of texts) {
      if (value === undefined) continue;
      checkLongString(`DeviceObserverIdentifyingAttributes ${field}`, value);
      items.push(new TextContentItem({ name, value, relationshipType: rel }));
    }
    this.contentItems = items;
  }
}

/**
 * TID 1002 Observer Context, device branch: Observer Type (121005, DCM) = Device (121007, DCM), then
 * TID 1004. RadScribe's observer is always the model, never a person: the draft is unverified.
 */
export class ObserverContext extends Template {
  readonly contentItems: readonly ContentItem[];

  constructor(opts: { observerIdentifyingAttributes: DeviceObserverIdentifyingAttributes }) {
    super();
    if (!(opts.observerIdentifyingAttributes instanceof DeviceObserverIdentifyingAttributes)) {
      throw new SrValidationError(
        'ObserverContext observerIdentifyingAttributes must be DeviceObserverIdentifyingAttributes (TID 1004)',
      );
    }
    this.contentItems = [
      new CodeContentItem({
        name: Codes.ObserverType,
        value: Codes.Device,
        relationshipType: RelationshipType.HAS_OBS_CONTEXT,
      }),
      ...opts.observerIdentifyingAttributes.contentItems,
    ];
  }
}

/**
 * TID 4019 Algorithm Identification: Algorithm Family (CODE), Name and Version (TEXT, mandatory),
 * Parameters (TEXT, zero or more; we store the prompt), Manufacturer (TEXT). The including template
 * decides the relationship; TID 1501 and we use HAS CONCEPT MOD.
 */
export class AlgorithmIdentification extends Template {
  readonly name: string;
  readonly version: string;
  readonly contentItems: readonly ContentItem[];

  constructor(opts: {
    name: string;
    version: string;
    parameters?: readonly string[];
    manufacturer?: string;
    family?: Code;
  }) {
    super();
    const rel = RelationshipType.HAS_CONCEPT_MOD;
    this.name = checkLongString('AlgorithmIdentification name', opts.name);
    this.version = checkLongString('AlgorithmIdentification version', opts.version);
    const items: ContentItem[] = [
      new CodeContentItem({
        name: Codes.AlgorithmFamily,
        value: assertCode('AlgorithmIdentification family', opts.family ?? Codes.ArtificialIntelligence),
        relationshipType: rel,
      }),
      new TextContentItem({ name: Codes.AlgorithmName, value: this.name, relationshipType: rel }),
      new TextContentItem({ name: Codes.AlgorithmVersion, value: this.version, relationshipType: rel }),
    ];
    for (const [i, p] of (opts.parameters ?? []).entries()) {
      checkNonEmptyText(`AlgorithmIdentification parameters[${i}]`, p);
      items.push(new TextContentItem({ name: Codes.AlgorithmParameters, value: p, relationshipType: rel }));
    }
    if (opts.manufacturer !== undefined) {
      checkLongString('AlgorithmIdentification manufacturer', opts.manufacturer);
      items.push(
        new TextContentItem({ name: Codes.AlgorithmManufacturer, value: opts.manufacturer, relationshipType: rel }),
      );
    }
    this.contentItems = items;
  }
}

/** One narrative finding about one image (or frame), the evidence it was inferred from. */
export interface ImageFinding {
  readonly text: string;
  readonly sopClassUid: string;
  readonly sopInstanceUid: string;
  readonly frameNumbers?: readonly number[];
}

/**
 * TID 2000 Basic Diagnostic Imaging Report. Root CONTAINER (18748-4, LN) from CID 7000 with:
 * TID 1204 language, TID 1002 observer context, a Findings section (59776-5, LN; CID 7001) holding one
 * TEXT Finding (121071, DCM; CID 7002) per described image, each INFERRED FROM an IMAGE (TID 2001
 * structure), an optional Impressions section, and a TEXT Comment carrying the "unverified AI draft"
 * disclaimer. TID 2000 is extensible, so TID 4019 sits on the Findings section as HAS CONCEPT MOD:
 * it qualifies who produced those findings.
 */
export class BasicDiagnosticImagingReport extends Template {
  static readonly TEMPLATE_IDENTIFIER = '2000';
  readonly root: ContainerContentItem;
  readonly contentItems: readonly ContentItem[];

  constructor(opts: {
    language?: LanguageOfContentItemAndDescendants;
    observerContext: ObserverContext;
    algorithmIdentification?: AlgorithmIdentification;
    findings: readonly ImageFinding[];
    impressions?: readonly string[];
    disclaimer: string;
  }) {
    super();
    if (!(opts.observerContext instanceof ObserverContext)) {
      throw new SrValidationError('BasicDiagnosticImagingReport observerContext must be an ObserverContext (TID 1002)');
    }
    if (!Array.isArray(opts.findings) || opts.findings.length === 0) {
      throw new SrValidationError('BasicDiagnosticImagingReport findings must be a non-empty array');
    }
    const language = opts.language ?? new LanguageOfContentItemAndDescendants();
    const findingItems = opts.findings.map(
      (f, i) =>
        new TextContentItem({
          name: Codes.Finding,
          value: checkNonEmptyText(`BasicDiagnosticImagingReport findings[${i}].text`, f?.text),
          relationshipType: RelationshipType.CONTAINS,
          children: [
            new ImageContentItem({
              relationshipType: RelationshipType.INFERRED_FROM,
              referencedSopClassUid: f.sopClassUid,
              referencedSopInstanceUid: f.sopInstanceUid,
              ...(f.frameNumbers === undefined ? {} : { frameNumbers: f.frameNumbers }),
            }),
          ],
        }),
    );
    const sections: ContentItem[] = [
      new ContainerContentItem({
        name: Codes.Findings,
        relationshipType: RelationshipType.CONTAINS,
        continuityOfContent: ContinuityOfContent.SEPARATE,
        children: [...(opts.algorithmIdentification?.contentItems ?? []), ...findingItems],
      }),
    ];
    if (opts.impressions !== undefined && opts.impressions.length > 0) {
      sections.push(
        new ContainerContentItem({
          name: Codes.Impressions,
          relationshipType: RelationshipType.CONTAINS,
          children: opts.impressions.map(
            (text) =>
              new TextContentItem({ name: Codes.Impression, value: text, relationshipType: RelationshipType.CONTAINS }),
          ),
        }),
      );
    }
    sections.push(
      new TextContentItem({
        name: Codes.Comment,
        value: checkNonEmptyText('BasicDiagnosticImagingReport disclaimer', opts.disclaimer),
        relationshipType: RelationshipType.CONTAINS,
      }),
    );
    this.root = new ContainerContentItem({
      name: Codes.DiagnosticImagingReport,
      continuityOfContent: ContinuityOfContent.SEPARATE,
      templateIdentifier: BasicDiagnosticImagingReport.TEMPLATE_IDENTIFIER,
      children: [...language.contentItems, ...opts.observerContext.contentItems, ...sections],
    });
    this.contentItems = [this.root];
  }
}
