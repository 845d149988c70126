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

/**
 * TID 1001 Observation Context. RadScribe records only the observer (TID 1002, device branch); the
 * procedure (TID 1005) and subject (TID 1006) contexts are inherited from the document header, as
 * TID 1001 allows when they are not overridden.
 */
export class ObservationContext extends Template {
  readonly contentItems: readonly ContentItem[];

  constructor(opts: { observerContext: ObserverContext }) {
    super();
    if (!(opts?.observerContext instanceof ObserverContext)) {
      throw new SrValidationError('ObservationContext observerContext must be an ObserverContext (TID 1002)');
    }
    this.contentItems = [...opts.observerContext.contentItems];
  }
}

/**
 * TID 4108 Tracking Identifier: a human-readable Tracking Identifier (112039, DCM; TEXT) and a Tracking
 * Unique Identifier (112040, DCM; UIDREF), both HAS OBS CONTEXT (TID 1501 rows 2–3).
 */
export class TrackingIdentifier extends Template {
  readonly identifier: string;
  readonly uid: string;
  readonly contentItems: readonly ContentItem[];

  constructor(opts: { identifier: string; uid: string }) {
    super();
    this.identifier = checkLongString('TrackingIdentifier identifier', opts?.identifier);
    const rel = RelationshipType.HAS_OBS_CONTEXT;
    let uidItem: UidRefContentItem;
    try {
      uidItem = new UidRefContentItem({ name: Codes.TrackingUniqueIdentifier, value: opts.uid, relationshipType: rel });
    } catch (err) {
      throw new SrValidationError(`TrackingIdentifier uid: ${(err as Error).message}`);
    }
    this.uid = opts.uid;
    this.contentItems = [
      new TextContentItem({ name: Codes.TrackingIdentifier, value: this.identifier, relationshipType: rel }),
      uidItem,
    ];
  }
}

/** A source image as listed in the Image Library and referenced by a measurement group. */
export interface ImageReference {
  readonly sopClassUid: string;
  readonly sopInstanceUid: string;
  readonly frameNumbers?: readonly number[];
}

function imageItem(what: string, ref: ImageReference, relationshipType: RelationshipType): ImageContentItem {
  if (ref === null || typeof ref !== 'object') throw new SrValidationError(`${what} must be an image reference`);
  try {
    return new ImageContentItem({
      relationshipType,
      referencedSopClassUid: ref.sopClassUid,
      referencedSopInstanceUid: ref.sopInstanceUid,
      ...(ref.frameNumbers === undefined ? {} : { frameNumbers: ref.frameNumbers }),
    });
  } catch (err) {
    throw new SrValidationError(`${what}: ${(err as Error).message}`);
  }
}

/**
 * TID 1600 Image Library: CONTAINER (111028, DCM) CONTAINS one Image Library Group (126200, DCM) that
 * CONTAINS an IMAGE (TID 1601 Image Library Entry) per evidence instance. Descriptors (TID 1602) are
 * optional and omitted: the header of each referenced image already carries them.
 */
export class ImageLibrary extends Template {
  readonly images: readonly ImageReference[];
  readonly contentItems: readonly ContentItem[];

  constructor(opts: { images: readonly ImageReference[] }) {
    super();
    if (!Array.isArray(opts?.images) || opts.images.length === 0) {
      throw new SrValidationError('ImageLibrary images must be a non-empty array');
    }
    const entries = opts.images.map((ref, i) => imageItem(`ImageLibrary images[${i}]`, ref, RelationshipType.CONTAINS));
    this.images = Object.freeze([...opts.images]);
    this.contentItems = [
      new ContainerContentItem({
        name: Codes.ImageLibrary,
        relationshipType: RelationshipType.CONTAINS,
        children: [
          new ContainerContentItem({
            name: Codes.ImageLibraryGroup,
            relationshipType: RelationshipType.CONTAINS,
            children: entries,
          }),
        ],
      }),
    ];
  }
}

/**
 * TID 1501 Measurement and Qualitative Evaluation Group, one per described image:
 * CONTAINER (125007, DCM) with TID 4108 tracking identifier, HAS CONCEPT MOD Finding (121071, DCM)
 * = the finding type, TID 4019 (HAS CONCEPT MOD), and the model's narrative as a TEXT qualitative
 * evaluation (CONTAINS TEXT (121071, DCM, "Finding")) INFERRED FROM the image it describes.
 *
 * TEXT-valued qualitative evaluations: TID 1501 rows for qualitative evaluations are CODE-valued in
 * highdicom; free text is admitted by the DICOM change proposal that maps AIM comments onto TID 1500
 * ("Update AIM to DICOM SR TID 1500 mapping", reference/dicom-sr-and-audit.md §2), and highdicom's
 * maintainers confirm the standard allows it (highdicom issue #124). See docs/draft-sr.md.
 */
export class MeasurementsAndQualitativeEvaluations extends Template {
  readonly trackingIdentifier: TrackingIdentifier;
  readonly text: string;
  readonly image: ImageReference;
  readonly contentItems: readonly ContentItem[];

  constructor(opts: {
    trackingIdentifier: TrackingIdentifier;
    findingType?: Code;
    algorithmIdentification: AlgorithmIdentification;
    text: string;
    image: ImageReference;
  }) {
    super();
    if (!(opts?.trackingIdentifier instanceof TrackingIdentifier)) {
      throw new SrValidationError(
        'MeasurementsAndQualitativeEvaluations trackingIdentifier must be a TrackingIdentifier (TID 4108)',
      );
    }
    if (!(opts.algorithmIdentification instanceof AlgorithmIdentification)) {
      throw new SrValidationError(
        'MeasurementsAndQualitativeEvaluations algorithmIdentification must be an AlgorithmIdentification (TID 4019)',
      );
    }
    const findingType = assertCode(
      'MeasurementsAndQualitativeEvaluations findingType',
      opts.findingType ?? Codes.ClinicalFinding,
    );
    this.text = checkNonEmptyText('MeasurementsAndQualitativeEvaluations text', opts.text);
    const image = imageItem('MeasurementsAndQualitativeEvaluations image', opts.image, RelationshipType.INFERRED_FROM);
    this.trackingIdentifier = opts.trackingIdentifier;
    this.image = opts.image;
    this.contentItems = [
      new ContainerContentItem({
        name: Codes.MeasurementGroup,
        relationshipType: RelationshipType.CONTAINS,
        children: [
          ...opts.trackingIdentifier.contentItems,
          new CodeContentItem({
            name: Codes.Finding,
            value: findingType,
            relationshipType: RelationshipType.HAS_CONCEPT_MOD,
          }),
          ...opts.algorithmIdentification.contentItems,
          new TextContentItem({
            name: Codes.Finding,
            value: this.text,
            relationshipType: RelationshipType.CONTAINS,
            children: [image],
          }),
        ],
      }),
    ];
  }
}

/**
 * TID 1500 Measurement Report, the root template of the IHE AI Results (AIR) profile
 * (AIR Rev 1.1 §6.5.3.1; reference/dicom-sr-and-audit.md §1–2). Root CONTAINER (126000, DCM) from
 * CID 7021, then in template order: TID 1204 language (HAS CONCEPT MOD), TID 1001 observation context
 * (HAS OBS CONTEXT), Procedure Reported (121058, DCM; HAS CONCEPT MOD) = the imaging procedure
 * analyzed, never the algorithm, TID 1600 image library, Imaging Measurements (126010, DCM) holding the
 * TID 1501 groups, and Qualitative Evaluations (C0034375, UMLS) holding the "unverified AI draft"
 * disclaimer as TEXT Comment (121106, DCM).
 */
export class MeasurementReport extends Template {
  static readonly TEMPLATE_IDENTIFIER = '1500';
  readonly root: ContainerContentItem;
  readonly contentItems: readonly ContentItem[];

  constructor(opts: {
    language?: LanguageOfContentItemAndDescendants;
    observationContext: ObservationContext;
    procedureReported: readonly Code[];
    imageLibrary: ImageLibrary;
    measurementGroups: readonly MeasurementsAndQualitativeEvaluations[];
    disclaimer: string;
  }) {
    super();
    if (!(opts?.observationContext instanceof ObservationContext)) {
      throw new SrValidationError('MeasurementReport observationContext must be an ObservationContext (TID 1001)');
    }
    if (opts.language !== undefined && !(opts.language instanceof LanguageOfContentItemAndDescendants)) {
      throw new SrValidationError(
        'MeasurementReport language must be a LanguageOfContentItemAndDescendants (TID 1204)',
      );
    }
    if (!Array.isArray(opts.procedureReported) || opts.procedureReported.length === 0) {
      throw new SrValidationError('MeasurementReport procedureReported must be a non-empty array of codes');
    }
    const procedures = opts.procedureReported.map((c, i) => assertCode(`MeasurementReport procedureReported[${i}]`, c));
    if (!(opts.imageLibrary instanceof ImageLibrary)) {
      throw new SrValidationError('MeasurementReport imageLibrary must be an ImageLibrary (TID 1600)');
    }
    if (!Array.isArray(opts.measurementGroups) || opts.measurementGroups.length === 0) {
      throw new SrValidationError('MeasurementReport measurementGroups must be a non-empty array');
    }
    opts.measurementGroups.forEach((g, i) => {
      if (!(g instanceof MeasurementsAndQualitativeEvaluations)) {
        throw new SrValidationError(
          `MeasurementReport measurementGroups[${i}] must be a MeasurementsAndQualitativeEvaluations (TID 1501)`,
        );
      }
    });
    const disclaimer = checkNonEmptyText('MeasurementReport disclaimer', opts.disclaimer);
    const language = opts.language ?? new LanguageOfContentItemAndDescendants();
    this.root = new ContainerContentItem({
      name: Codes.ImagingMeasurementReport,
      continuityOfContent: ContinuityOfContent.SEPARATE,
      templateIdentifier: MeasurementReport.TEMPLATE_IDENTIFIER,
      children: [
        ...language.contentItems,
        ...opts.observationContext.contentItems,
        ...procedures.map(
          (value) =>
            new CodeContentItem({
              name: Codes.ProcedureReported,
              value,
              relationshipType: RelationshipType.HAS_CONCEPT_MOD,
            }),
        ),
        ...opts.imageLibrary.contentItems,
        new ContainerContentItem({
          name: Codes.ImagingMeasurements,
          relationshipType: RelationshipType.CONTAINS,
          children: opts.measurementGroups.flatMap((g) => g.contentItems),
        }),
        new ContainerContentItem({
          name: Codes.QualitativeEvaluations,
          relationshipType: RelationshipType.CONTAINS,
          children: [
            new TextContentItem({
              name: Codes.Comment,
              value: disclaimer,
              relationshipType: RelationshipType.CONTAINS,
            }),
          ],
        }),
      ],
    });
    this.contentItems = [this.root];
  }
}
