import type { ErrorCode } from '../../src/errors.js';
import type { RemoteStudyTracker } from '../../src/ingest/remote-study-tracker.js';

/** In-memory RemoteStudyTracker for tests only; production uses PgRemoteStudyTracker. */
export class MemoryStudyTracker implements RemoteStudyTracker {
  readonly state = new Map<string, { status: 'seen' | 'retrieved' | 'failed'; code?: ErrorCode; message?: string }>();
  readonly calls: string[] = [];
  private key(node: string, study: string): string {
    return `${node}|${study}`;
  }
  async isRetrieved(node: string, studyInstanceUid: string): Promise<boolean> {
    return this.state.get(this.key(node, studyInstanceUid))?.status === 'retrieved';
  }
  async markSeen(node: string, studyInstanceUid: string): Promise<void> {
    this.calls.push(`seen ${studyInstanceUid}`);
    if (!this.state.has(this.key(node, studyInstanceUid)))
      this.state.set(this.key(node, studyInstanceUid), { status: 'seen' });
  }
  async markRetrieved(node: string, studyInstanceUid: string): Promise<void> {
    this.calls.push(`retrieved ${studyInstanceUid}`);
    this.state.set(this.key(node, studyInstanceUid), { status: 'retrieved' });
  }
  async markFailed(node: string, studyInstanceUid: string, code: ErrorCode, message: string): Promise<void> {
    this.calls.push(`failed ${studyInstanceUid}`);
    this.state.set(this.key(node, studyInstanceUid), { status: 'failed', code, message });
  }
}
