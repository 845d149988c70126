import type { ErrorCode } from '../../src/errors.js';
import {
  type FailureRecorded,
  type InSameTransaction,
  type RemoteStudyState,
  type RemoteStudyTracker,
  RetrieveDecision,
  type RetrieveFailure,
  type RetrieveGate,
  type RetrievePolicy,
} from '../../src/ingest/remote-study-tracker.js';

interface Row {
  status: RemoteStudyState;
  attempts: number;
  code?: ErrorCode;
  message?: string;
  nextAttemptAt: number | null;
  count: number | null;
  failedInstances: readonly string[];
}

/**
 * In-memory RemoteStudyTracker for tests only; production uses PgRemoteStudyTracker, whose SQL the
 * integration test holds to the same rules (remote-study-tracker.int.test.ts).
 */
export class MemoryStudyTracker implements RemoteStudyTracker {
  readonly state = new Map<string, Row>();
  readonly calls: string[] = [];
  private key(node: string, study: string): string {
    return `${node}|${study}`;
  }
  async observe(node: string, studyInstanceUid: string, count: number | null): Promise<RetrieveGate> {
    this.calls.push(`seen ${studyInstanceUid}`);
    const k = this.key(node, studyInstanceUid);
    let row = this.state.get(k);
    let reopened = false;
    if (!row) {
      row = { status: 'seen', attempts: 0, nextAttemptAt: null, count: null, failedInstances: [] };
      this.state.set(k, row);
    } else if ((row.status === 'failed' || row.status === 'given-up') && count !== null && row.count !== count) {
      Object.assign(row, { status: 'seen', attempts: 0, nextAttemptAt: null });
      reopened = true;
    }
    const decision =
      row.status === 'retrieved'
        ? RetrieveDecision.Retrieved
        : row.status === 'given-up'
          ? RetrieveDecision.GivenUp
          : row.status === 'failed' && row.nextAttemptAt !== null && row.nextAttemptAt > Date.now()
            ? RetrieveDecision.Backoff
            : RetrieveDecision.Attempt;
    return {
      decision,
      attempt: decision === RetrieveDecision.Attempt ? row.attempts + 1 : row.attempts,
      reopened,
      knownInstanceCount: row.count,
    };
  }
  async markChecked(node: string, studyInstanceUid: string, count: number | null): Promise<void> {
    this.calls.push(`checked ${studyInstanceUid}`);
    const row = this.state.get(this.key(node, studyInstanceUid));
    if (row?.status === 'retrieved') row.count = count;
  }
  async markRetrieved(
    node: string,
    studyInstanceUid: string,
    count: number | null = null,
    then?: InSameTransaction,
  ): Promise<void> {
    this.calls.push(`retrieved ${studyInstanceUid}`);
    const k = this.key(node, studyInstanceUid);
    const prev = this.state.get(k);
    this.state.set(k, {
      status: 'retrieved',
      attempts: (prev?.attempts ?? 0) + 1,
      nextAttemptAt: null,
      count,
      failedInstances: [],
    });
    // Like the transaction of PgRemoteStudyTracker: a failing `then` undoes the update.
    try {
      await then?.(undefined, undefined);
    } catch (err: unknown) {
      if (prev) this.state.set(k, prev);
      else this.state.delete(k);
      throw err;
    }
  }
  async markFailed(
    node: string,
    studyInstanceUid: string,
    code: ErrorCode,
    message: string,
    failure: Omit<RetrieveFailure, 'code' | 'message'> = {},
    policy?: RetrievePolicy,
    then?: InSameTransaction<FailureRecorded>,
  ): Promise<FailureRecorded> {
    this.calls.push(`failed ${studyInstanceUid}`);
    const k = this.key(node, studyInstanceUid);
    const prev = this.state.get(k);
    const attempts = (this.state.get(k)?.attempts ?? 0) + 1;
    const givenUp = policy !== undefined && attempts >= policy.maxAttempts;
    const b = policy?.backoff;
    const delay = b ? Math.min(b.maxMs, b.initialMs * b.factor ** (attempts - 1)) : 0;
    const nextAttemptAt = givenUp ? null : Date.now() + delay;
    this.state.set(k, {
      status: givenUp ? 'given-up' : 'failed',
      attempts,
      code,
      message,
      nextAttemptAt,
      count: failure.remoteInstanceCount ?? null,
      failedInstances: failure.failedInstances ?? [],
    });
    const recorded: FailureRecorded = {
      state: givenUp ? 'given-up' : 'failed',
      attempts,
      nextAttemptAt: nextAttemptAt === null ? null : new Date(nextAttemptAt),
    };
    try {
      await then?.(undefined, recorded);
    } catch (err: unknown) {
      if (prev) this.state.set(k, prev);
      else this.state.delete(k);
      throw err;
    }
    return recorded;
  }
}
