/**
 * Request/response over MQTT for the agent (STYLE.md: the AWS IoT SDK habit): every request
 * carries a `clientToken`, the answer comes back on `.../accepted` or `.../rejected` with the
 * same token. Each attempt times out; timeouts, 429 and 5xx are retried a bounded number of
 * times with the same token (a late answer to an earlier attempt still counts). Retrying is
 * safe because the agent's requests are idempotent: a report carries state, not a change.
 */
import { randomBytes } from 'node:crypto';
import { UpdraftError, type ErrorCode } from '../errors.ts';
import { isJsonObject, type JsonObject } from '../protocol/json.ts';
import { answerTopic, certificateAnswerTopic, certificateRenewTopic, credentialsAnswerTopic, credentialsRequestTopic, jobLogAnswerTopic, jobLogTopic, requestTopic, shadowPrefix, type ShadowRef } from '../protocol/topics.ts';

/** The operations the agent uses: shadow update and get, temporary download credentials, the renewal of its client certificate, and the log of a failed job. */
export type AgentOperation = 'update' | 'get' | 'credentials' | 'certificate' | 'job-log';

const OPERATIONS = ['update', 'get', 'credentials', 'certificate', 'job-log'] as const;

/** Timing of requests. */
export interface RequestPolicy {
  /** How long one attempt waits for its answer, in ms. */
  timeoutMs: number;
  /** Attempts per request (1 = no retry). */
  attempts: number;
  /** Delay before the first retry, doubled per retry, in ms. */
  retryDelayMs: number;
}

/** Defaults: 10 s per attempt, 3 attempts, 1 s then 2 s between them. */
export const REQUEST_DEFAULTS: RequestPolicy = { timeoutMs: 10_000, attempts: 3, retryDelayMs: 1000 };

interface Pending {
  op: AgentOperation;
  resolve: (answer: JsonObject) => void;
  reject: (err: Error) => void;
  timer: NodeJS.Timeout;
}

/** Sends shadow requests for one device and matches the answers to them. */
export class ShadowRequester {
  private readonly ref: ShadowRef;
  private readonly send: (topic: string, payload: string) => Promise<void>;
  private readonly policy: RequestPolicy;
  private readonly pending = new Map<string, Pending>();
  private readonly waits = new Set<() => void>();
  /** Random per instance: tokens of a restarted agent never collide with late answers to the old one. */
  private readonly prefix = randomBytes(4).toString('hex');
  private seq = 0;
  private closed = false;
  /** Requests sent per operation (each counted once, however many attempts it took). */
  readonly sent: Record<AgentOperation, number> = { update: 0, get: 0, credentials: 0, certificate: 0, 'job-log': 0 };

  /** Whether this device asks for temporary download credentials (`downloadAuth: 'token'`). */
  private readonly credentials: boolean;
  /** Whether this device renews its client certificate (`certificateRenewal`). */
  private readonly certificates: boolean;

  constructor(deps: { deviceId: string; send: (topic: string, payload: string) => Promise<void>; policy: RequestPolicy; credentials: boolean; certificates?: boolean }) {
    this.ref = { deviceId: deps.deviceId, name: '' };
    this.send = deps.send;
    this.policy = deps.policy;
    this.credentials = deps.credentials;
    this.certificates = deps.certificates === true;
  }

  /**
   * The filters to subscribe to for the answers: two (three with temporary credentials)
   * instead of one per operation and outcome (six). Every subscription costs the broker at
   * connect and disconnect, and a fleet connects and disconnects all the time; a device that
   * downloads with pre-signed URLs never asks for credentials, so it does not listen for
   * their answers either. `+` also matches `delete/...` answers, which are not ours and are
   * dropped like any other answer nobody waits for, and `job-log/...`, which are; `update/documents`
   * and `update/delta` it does not match.
   */
  answerTopics(): string[] {
    const prefix = shadowPrefix(this.ref);
    const topics = [`${prefix}/+/accepted`, `${prefix}/+/rejected`];
    if (this.credentials) topics.push(`${credentialsRequestTopic(this.ref.deviceId)}/+`);
    if (this.certificates) topics.push(`${certificateRenewTopic(this.ref.deviceId)}/+`);
    return topics;
  }

  private answer(op: AgentOperation, kind: 'accepted' | 'rejected'): string {
    if (op === 'credentials') return credentialsAnswerTopic(this.ref.deviceId, kind);
    if (op === 'certificate') return certificateAnswerTopic(this.ref.deviceId, kind);
    if (op === 'job-log') return jobLogAnswerTopic(this.ref.deviceId, kind);
    return answerTopic(this.ref, op, kind);
  }

  /**
   * Publishes `body` with a fresh clientToken and resolves with the accepted answer. Throws
   * UpdraftError: the rejection's code (with `status` = its HTTP-style code), or TIMEOUT.
   */
  async request(op: AgentOperation, body: JsonObject): Promise<JsonObject> {
    const token = `${this.prefix}-${(++this.seq).toString(36)}`;
    // Object.assign, not `{ ...body, clientToken }`: a spread followed by a new key takes V8's
    // slow path in Node 20 (1.5 µs against 0.1), and a simulated fleet sends this per request
    const payload = JSON.stringify(Object.assign({}, body, { clientToken: token }));
    this.sent[op]++;
    for (let attempt = 1; ; attempt++) {
      if (this.closed) throw stopped();
      try {
        return await this.once(op, token, payload);
      } catch (err) {
        if (this.closed || attempt >= this.policy.attempts || !isRetryable(err)) throw err;
      }
      await this.delay(this.policy.retryDelayMs * 2 ** (attempt - 1));
    }
  }

  /** Routes a received message; true when it was the answer to a pending request. */
  handleMessage(topic: string, payload: Buffer): boolean {
    const kind = this.kindOf(topic);
    // nothing asked: not an answer of ours (the replica's answers to the rollout engine's own
    // writes reach the device too, and parsing them was 3% of a simulated fleet's CPU)
    if (!kind || this.pending.size === 0) return false;
    let body: unknown;
    try {
      body = JSON.parse(payload.toString('utf8'));
    } catch {
      return false;
    }
    if (!isJsonObject(body) || typeof body.clientToken !== 'string') return false;
    const pending = this.pending.get(body.clientToken);
    // answers to other clients' requests (an operator's update) arrive here too: not ours
    if (!pending || pending.op !== kind.op) return false;
    this.pending.delete(body.clientToken);
    clearTimeout(pending.timer);
    if (kind.accepted) pending.resolve(body);
    else pending.reject(rejectionError(kind.op, body));
    return true;
  }

  /** Fails every pending request and wait (the agent is stopping). */
  close(): void {
    this.closed = true;
    for (const [token, p] of this.pending) {
      clearTimeout(p.timer);
      this.pending.delete(token);
      p.reject(stopped());
    }
    for (const wake of this.waits) wake();
  }

  private once(op: AgentOperation, token: string, payload: string): Promise<JsonObject> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(token);
        reject(new UpdraftError('TIMEOUT', `no answer to ${op} within ${this.policy.timeoutMs} ms`));
      }, this.policy.timeoutMs);
      this.pending.set(token, { op, resolve, reject, timer });
      // a failed send is not final: the broker may have it, and the timeout retries otherwise
      const topic = op === 'credentials' ? credentialsRequestTopic(this.ref.deviceId) : op === 'certificate' ? certificateRenewTopic(this.ref.deviceId) : op === 'job-log' ? jobLogTopic(this.ref.deviceId) : requestTopic(this.ref, op);
      this.send(topic, payload).catch(() => {});
    });
  }

  private delay(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const wake = () => {
        clearTimeout(timer);
        this.waits.delete(wake);
        resolve();
      };
      const timer = setTimeout(wake, ms);
      this.waits.add(wake);
    });
  }

  private kindOf(topic: string): { op: AgentOperation; accepted: boolean } | undefined {
    for (const op of OPERATIONS) {
      // not subscribed, so never an answer (and every message a device receives comes this way)
      if (op === 'certificate' && !this.certificates) continue;
      if (topic === this.answer(op, 'accepted')) return { op, accepted: true };
      if (topic === this.answer(op, 'rejected')) return { op, accepted: false };
    }
    return undefined;
  }
}

const CODES: Record<number, ErrorCode> = {
  400: 'BAD_REQUEST',
  401: 'UNAUTHORIZED',
  403: 'FORBIDDEN',
  404: 'NOT_FOUND',
  409: 'CONFLICT',
  413: 'TOO_LARGE',
  429: 'TOO_MANY_REQUESTS',
};

/** The UpdraftError of a rejection `{code, message}`; `status` keeps the code. */
function rejectionError(op: AgentOperation, body: JsonObject): UpdraftError {
  const status = typeof body.code === 'number' ? body.code : 500;
  const message = typeof body.message === 'string' ? body.message : 'no reason given';
  return new UpdraftError(CODES[status] ?? 'INTERNAL', `${op} rejected (${status}): ${message}`, { status });
}

/** Thrown by everything still waiting when the agent stops. */
export class AgentStoppedError extends UpdraftError {
  constructor() {
    // an expected stop, not a fault: no stack to capture (capturing one was 1% of a
    // simulated fleet's CPU, where every visit ends with a stop)
    const limit = Error.stackTraceLimit;
    Error.stackTraceLimit = 0;
    super('INTERNAL', 'the agent is stopping');
    Error.stackTraceLimit = limit;
    this.name = 'AgentStoppedError';
  }
}

/** Timeouts, 429 and 5xx may succeed later; other rejections will not. */
export function isRetryable(err: unknown): boolean {
  if (err instanceof AgentStoppedError) return false;
  if (!(err instanceof UpdraftError)) return true;
  return err.code === 'TIMEOUT' || err.status === 429 || err.status >= 500;
}

function stopped(): AgentStoppedError {
  return new AgentStoppedError();
}
