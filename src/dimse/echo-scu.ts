import net from 'node:net';
import { RADSCRIBE_IMPLEMENTATION_CLASS_UID, RADSCRIBE_IMPLEMENTATION_VERSION_NAME } from '../dicom/sr/sr-document.js';
import { SopClass, TransferSyntax } from '../dicom/uids.js';
import { aeTitleProblem } from './ae-title.js';
import { CommandField, decodeCommandSet, encodeCEchoRq, parseResponse } from './dimse-command.js';
import {
  DEFAULT_MAX_PDU_LENGTH,
  DICOM_APPLICATION_CONTEXT,
  encodePdu,
  type Pdu,
  PduReader,
  PduType,
  PresentationContextResult,
} from './pdu.js';

/**
 * C-ECHO SCU (Verification, PS3.4 Annex A, requestor side of PS3.8 §9.2): associate with one
 * presentation context (Verification, Implicit VR Little Endian), send C-ECHO-RQ, read the
 * C-ECHO-RSP, release. Reports each step's outcome and the round-trip times.
 */

export interface EchoTarget {
  readonly host: string;
  readonly port: number;
  readonly calledAeTitle: string;
}

export interface EchoResult {
  readonly ok: boolean;
  /** What happened, for the operator: "success", "rejected (…)", "aborted (…)", "timeout", … */
  readonly outcome: string;
  /** DIMSE status of the C-ECHO-RSP, when one came. */
  readonly status?: number;
  /** Connect → A-ASSOCIATE-AC. */
  readonly associateMs?: number;
  /** C-ECHO-RQ sent → C-ECHO-RSP read. */
  readonly echoMs?: number;
  /** Connect → connection closed after release. */
  readonly totalMs: number;
}

/** `host:port:AET` (AET may be omitted: ANY-SCP, DCMTK's default). */
export function parseEchoTarget(s: string): EchoTarget {
  const m = /^(\[[^\]]+\]|[^:]+):(\d{1,5})(?::(.+))?$/.exec(s);
  if (!m) throw new Error(`expected host:port:AET, got "${s}"`);
  const port = Number(m[2]);
  if (port < 1 || port > 65535) throw new Error(`port ${port} out of range`);
  const calledAeTitle = m[3] ?? 'ANY-SCP';
  const why = aeTitleProblem(calledAeTitle);
  if (why) throw new Error(`called AE title: ${why}`);
  return { host: (m[1] as string).replace(/^\[|\]$/g, ''), port, calledAeTitle };
}

export async function echo(
  target: EchoTarget,
  opts: { callingAeTitle?: string; timeoutMs?: number } = {},
): Promise<EchoResult> {
  const calling = opts.callingAeTitle ?? 'RADSCRIBE';
  const timeoutMs = opts.timeoutMs ?? 10_000;
  const t0 = performance.now();
  const ms = (t: number): number => Math.round((t - t0) * 100) / 100;
  return new Promise<EchoResult>((resolve) => {
    const reader = new PduReader();
    const socket = net.connect({ host: target.host, port: target.port });
    socket.setNoDelay(true);
    let settled = false;
    let associateAt: number | undefined;
    let echoSentAt = 0;
    let echoMs: number | undefined;
    let status: number | undefined;
    const finish = (ok: boolean, outcome: string): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      socket.destroy();
      resolve({
        ok,
        outcome,
        ...(status !== undefined ? { status } : {}),
        ...(associateAt !== undefined ? { associateMs: ms(associateAt) } : {}),
        ...(echoMs !== undefined ? { echoMs } : {}),
        totalMs: ms(performance.now()),
      });
    };
    const timer = setTimeout(() => finish(false, `timeout after ${timeoutMs} ms`), timeoutMs);
    const send = (pdu: Pdu): void => {
      socket.write(encodePdu(pdu));
    };
    socket.on('error', (err) => finish(false, `network error: ${err.message}`));
    socket.on('close', () => {
      if (status !== undefined) finish(status === 0, status === 0 ? 'success' : `status 0x${status.toString(16)}`);
      else finish(false, 'connection closed by peer');
    });
    socket.on('connect', () => {
      send({
        type: PduType.AssociateRq,
        protocolVersion: 1,
        calledAeTitle: target.calledAeTitle,
        callingAeTitle: calling,
        applicationContext: DICOM_APPLICATION_CONTEXT,
        presentationContexts: [
          { id: 1, abstractSyntax: SopClass.Verification, transferSyntaxes: [TransferSyntax.ImplicitVrLittleEndian] },
        ],
        userInformation: {
          maxPduLength: DEFAULT_MAX_PDU_LENGTH,
          implementationClassUid: RADSCRIBE_IMPLEMENTATION_CLASS_UID,
          implementationVersionName: RADSCRIBE_IMPLEMENTATION_VERSION_NAME,
        },
      });
    });
    socket.on('data', (chunk: Buffer) => {
      reader.push(chunk);
      try {
        for (let pdu = reader.next(); pdu; pdu = reader.next()) {
          switch (pdu.type) {
            case PduType.AssociateAc: {
              associateAt = performance.now();
              const pc = pdu.presentationContexts.find((p) => p.id === 1);
              if (pc?.result !== PresentationContextResult.Acceptance) {
                send({ type: PduType.Abort, source: 0, reason: 0 });
                finish(false, `Verification presentation context refused (result ${pc?.result ?? 'missing'})`);
                return;
              }
              echoSentAt = performance.now();
              send({
                type: PduType.PData,
                pdvs: [{ contextId: 1, command: true, last: true, fragment: encodeCEchoRq(1, SopClass.Verification) }],
              });
              break;
            }
            case PduType.AssociateRj:
              finish(false, `association rejected (result ${pdu.result}, source ${pdu.source}, reason ${pdu.reason})`);
              return;
            case PduType.PData: {
              // The response is small: one command PDV (fragments are joined if the peer split it).
              const cmd = Buffer.concat(pdu.pdvs.filter((p) => p.command).map((p) => p.fragment));
              const rsp = parseResponse(decodeCommandSet(cmd));
              if (rsp.commandField !== CommandField.CEchoRsp) {
                finish(false, `unexpected response 0x${rsp.commandField.toString(16)}`);
                return;
              }
              echoMs = Math.round((performance.now() - echoSentAt) * 100) / 100;
              status = rsp.status;
              send({ type: PduType.ReleaseRq });
              break;
            }
            case PduType.ReleaseRp:
              finish(status === 0, status === 0 ? 'success' : `status 0x${(status ?? 0).toString(16)}`);
              return;
            case PduType.Abort:
              finish(false, `aborted by peer (source ${pdu.source}, reason ${pdu.reason})`);
              return;
            default:
              finish(false, `unexpected PDU 0x${pdu.type.toString(16)}`);
              return;
          }
        }
      } catch (err: unknown) {
        finish(false, `malformed answer: ${err instanceof Error ? err.message : String(err)}`);
      }
    });
  });
}
