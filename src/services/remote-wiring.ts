import { dicomwebClientOptions } from '../config/options.js';
import type { RadScribeConfig } from '../config.js';
import { loadPdfFonts, type PdfFont } from '../dicom/pdf/fonts.js';
import {
  DimseDestination,
  FolderDestination,
  type SrDestination,
  StowRsDestination,
} from '../export/sr-destination.js';
import { DicomwebClient } from '../pacs/dicomweb-client.js';
import type { RoutedDestination } from '../pipeline/draft-export.js';
import { type Environment, resolveRemoteNodeAuth } from '../secrets.js';

/** What the remote-node configuration resolves to: clients with their secrets, and destinations. */
export interface RemoteWiring {
  readonly clients: ReadonlyMap<string, DicomwebClient>;
  readonly destinations: ReadonlyMap<string, RoutedDestination>;
  readonly pdfFonts: readonly PdfFont[] | undefined;
}

/** DICOMweb clients (with their secrets), export destinations and, when wanted, the PDF fonts. */
export function remoteWiring(config: RadScribeConfig, env: Environment): RemoteWiring {
  const auth = resolveRemoteNodeAuth(config, env);
  const clients = new Map(
    // A DIMSE-only node (baseUrl '') has no DICOMweb client.
    config.remoteNodes
      .filter((n) => n.baseUrl !== '')
      .map((n) => {
        const a = auth.get(n.name);
        return [n.name, new DicomwebClient({ ...dicomwebClientOptions(n), ...(a ? { auth: a } : {}) })];
      }),
  );
  const destinations = new Map<string, RoutedDestination>();
  for (const d of config.destinations) {
    let destination: SrDestination | undefined;
    if (d.type === 'folder') destination = new FolderDestination(d.name, d.path);
    else if (d.type === 'dimse')
      destination = new DimseDestination(d.name, {
        host: d.host,
        port: d.port,
        calledAeTitle: d.calledAeTitle,
        callingAeTitle: d.callingAeTitle,
        timeouts: { connectMs: d.connectTimeoutMs, artimMs: d.associationTimeoutMs, dimseMs: d.responseTimeoutMs },
        ...(d.tls ? { tls: d.tls } : {}),
      });
    else {
      const node = config.remoteNodes.find((n) => n.name === d.node);
      const client = clients.get(d.node);
      if (node && client) destination = new StowRsDestination(d.name, client, node.baseUrl, { verify: d.verifyStored });
    }
    if (destination) destinations.set(d.name, { destination, srProfile: d.srProfile, pdfCompanion: d.pdfCompanion });
  }
  // Fonts are read once, and only when a destination wants PDF companions; missing fonts stop
  // start-up with a configuration error rather than failing every job later.
  const pdfFonts = config.destinations.some((d) => d.pdfCompanion) ? loadPdfFonts() : undefined;
  return { clients, destinations, pdfFonts };
}
