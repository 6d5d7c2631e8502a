/**
 * The test plays the server: a minimal device shadow for ONE device over a real MQTT broker.
 * It answers `update` and `get` on the accepted topics echoing the clientToken, merges reported
 * state (null deletes), bumps the version on every accepted update, and publishes the delta
 * with the whole software command while desired differs from reported (as the replica does),
 * so the agent sees its own reports echoed back as deltas.
 */
import mqtt, { type MqttClient } from 'mqtt';
import type { JsonObject } from '../../../src/protocol/json.ts';
import type { DesiredSoftware, SoftwareCommand } from '../../../src/protocol/software.ts';
import { answerTopic, credentialsAnswerTopic, credentialsRequestTopic, deltaTopic, requestTopic, type ShadowRef } from '../../../src/protocol/topics.ts';

const LEAVES = ['name', 'version', 'sha256', 'size', 'jobId'] as const;

/** The shadow of one device, served over MQTT by the test. */
export class FakeShadowServer {
  readonly ref: ShadowRef;
  private readonly client: MqttClient;
  /** Every `reported.software` the device sent, in arrival order. */
  readonly reports: JsonObject[] = [];
  /** Every get request seen. */
  gets = 0;
  version = 0;
  desired: DesiredSoftware | undefined;
  reported: JsonObject = {};
  /** Builds the URL part of a command; replace to control expiry or signatures. */
  issueUrl: (sw: DesiredSoftware) => { url: string; urlExpiresAt: number };
  /** Every credentials request seen (`downloadAuth: 'token'`). */
  credentials = 0;
  /** Builds the temporary download credential a credentials request is answered with; replace to control its expiry. */
  issueCredential: () => { token: string; expiresAt: number } = () => ({ token: `tok-${this.credentials}`, expiresAt: Math.floor(this.now() / 1000) + 900 });
  /** The server's clock (ms), whose seconds stamp every answer and delta; a test may move it. */
  now: () => number = () => Date.now();
  /** The next N requests are swallowed without an answer. */
  dropNext = 0;
  /** Answer an update with its delta before its accepted (the agent then has the command before its report resolves). */
  deltaFirst = false;
  /** Answer updates with no delta (the replica sends one when desired software differs; this leaves only the deltas of setDesired). */
  noDeltaOnUpdate = false;
  /** When set, the next get is answered once this resolves, with the document as it was when the get came (a delta may overtake it). */
  holdNextGet: Promise<void> | undefined;
  private waiters: (() => void)[] = [];
  private closing = false;

  private constructor(client: MqttClient, deviceId: string, issueUrl: (sw: DesiredSoftware) => { url: string; urlExpiresAt: number }) {
    this.client = client;
    this.ref = { deviceId, name: '' };
    this.issueUrl = issueUrl;
    // A request being answered when close() ends the connection fails with "Connection closed": that
    // is the end of the test, not an error in it. Any other failure still surfaces (unhandled).
    client.on('message', (topic, payload) =>
      void this.onRequest(topic, payload).catch((err: unknown) => {
        if (!this.closing) throw err;
      }),
    );
  }

  static async start(brokerUrl: string, deviceId: string, issueUrl: (sw: DesiredSoftware) => { url: string; urlExpiresAt: number }): Promise<FakeShadowServer> {
    const client = await mqtt.connectAsync(brokerUrl, { clientId: `server-for-${deviceId}`, reconnectPeriod: 0 });
    const server = new FakeShadowServer(client, deviceId, issueUrl);
    await client.subscribeAsync([requestTopic(server.ref, 'update'), requestTopic(server.ref, 'get'), credentialsRequestTopic(deviceId)], { qos: 1 });
    return server;
  }

  /** The command for the current desired state (what a delta carries). */
  command(): SoftwareCommand {
    return { ...this.desired!, ...this.issueUrl(this.desired!) };
  }

  /** True while desired software differs from reported. */
  get differs(): boolean {
    if (!this.desired) return false;
    const rep = (this.reported.software ?? {}) as JsonObject;
    return LEAVES.some((k) => rep[k] !== this.desired![k]);
  }

  /** An operator sets the desired software (pattern steps 3-4). */
  async setDesired(sw: DesiredSoftware, command?: SoftwareCommand): Promise<void> {
    this.desired = sw;
    this.version++;
    await this.publishDelta(command);
  }

  /** Publishes the delta again (as after any later accepted update) with a new version. */
  async republishDelta(command?: SoftwareCommand): Promise<void> {
    this.version++;
    await this.publishDelta(command);
  }

  /** Publishes a raw delta message. */
  async publishRaw(body: unknown): Promise<void> {
    await this.client.publishAsync(deltaTopic(this.ref.deviceId), JSON.stringify(body), { qos: 1 });
  }

  /** Resolves when `pred` holds (checked after every request handled); rejects after a generous hang guard. */
  until(pred: () => boolean, what: string, timeoutMs = 20_000): Promise<void> {
    if (pred()) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`timed out waiting for ${what}; reports: ${JSON.stringify(this.reports.map(brief))}`)), timeoutMs);
      const check = () => {
        if (!pred()) return;
        clearTimeout(timer);
        this.waiters = this.waiters.filter((w) => w !== check);
        resolve();
      };
      this.waiters.push(check);
    });
  }

  /** Reports about one job. */
  reportsFor(jobId: string): JsonObject[] {
    return this.reports.filter((r) => r.jobId === jobId);
  }

  async close(): Promise<void> {
    this.closing = true;
    await this.client.endAsync(true);
  }

  private async publishDelta(command?: SoftwareCommand): Promise<void> {
    if (!this.differs && !command) return;
    const body = { state: { software: command ?? this.command() }, metadata: {}, version: this.version, timestamp: Math.floor(this.now() / 1000) };
    await this.client.publishAsync(answerTopic(this.ref, 'update', 'delta'), JSON.stringify(body), { qos: 1 });
  }

  private async onRequest(topic: string, payload: Buffer): Promise<void> {
    const req = JSON.parse(payload.toString()) as JsonObject;
    if (this.dropNext > 0) {
      this.dropNext--;
      this.notify();
      return;
    }
    const now = Math.floor(this.now() / 1000);
    if (topic === credentialsRequestTopic(this.ref.deviceId)) {
      this.credentials++;
      const sw = this.desired!;
      const answer = { ...this.issueCredential(), name: sw.name, version: sw.version, jobId: sw.jobId, timestamp: now, clientToken: req.clientToken };
      await this.client.publishAsync(credentialsAnswerTopic(this.ref.deviceId, 'accepted'), JSON.stringify(answer), { qos: 1 });
    } else if (topic === requestTopic(this.ref, 'update')) {
      const reported = ((req.state as JsonObject).reported ?? {}) as JsonObject;
      merge(this.reported, reported);
      if (isObj(reported.software)) this.reports.push(reported.software);
      this.version++;
      if (this.deltaFirst && !this.noDeltaOnUpdate) await this.publishDelta();
      await this.client.publishAsync(
        answerTopic(this.ref, 'update', 'accepted'),
        JSON.stringify({ state: { reported }, metadata: {}, version: this.version, timestamp: now, clientToken: req.clientToken }),
        { qos: 1 },
      );
      if (!this.deltaFirst && !this.noDeltaOnUpdate) await this.publishDelta();
    } else {
      this.gets++;
      const state: JsonObject = { reported: structuredClone(this.reported) };
      if (this.desired) state.desired = { software: { ...this.desired } };
      if (this.differs) state.delta = { software: { ...this.command() } };
      const answer = JSON.stringify({ state, metadata: {}, version: this.version, timestamp: now, clientToken: req.clientToken });
      const hold = this.holdNextGet;
      this.holdNextGet = undefined;
      if (hold) {
        this.notify(); // the get has come
        await hold;
      }
      await this.client.publishAsync(answerTopic(this.ref, 'get', 'accepted'), answer, { qos: 1 });
    }
    this.notify();
  }

  private notify(): void {
    for (const w of [...this.waiters]) w();
  }
}

function isObj(v: unknown): v is JsonObject {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function merge(target: JsonObject, patch: JsonObject): void {
  for (const [k, v] of Object.entries(patch)) {
    if (v === null) delete target[k];
    else if (isObj(v)) {
      const child = isObj(target[k]) ? (target[k] as JsonObject) : {};
      merge(child, v);
      target[k] = child;
    } else target[k] = v;
  }
}

/** A short form of a report for failure messages. */
export function brief(r: JsonObject): string {
  return `${r.jobId ?? '-'}:${r.status}${typeof r.progress === 'number' ? `@${r.progress}` : ''}:${r.version}${r.error ? `:${r.error}` : ''}`;
}
