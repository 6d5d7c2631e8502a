/** A test MQTT client that records every message and can await one matching a predicate. */
import { spawnSync } from 'node:child_process';
import mqtt, { type IClientOptions, type MqttClient } from 'mqtt';

/** The CONNACK return code of a refused connection, or undefined when it was accepted (it is closed again at once). */
export async function connackCode(url: string, options: IClientOptions): Promise<number | undefined> {
  try {
    const c = await mqtt.connectAsync(url, { reconnectPeriod: 0, connectTimeout: 5000, ...options });
    await c.endAsync();
    return undefined;
  } catch (err) {
    return (err as { code?: number }).code;
  }
}

/** How a connection fared: the CONNACK code when MQTT refused it, 'tls' when the TLS layer did (an error, or the socket closed before CONNACK: a TLS 1.3 server refuses a client certificate after the client's handshake is done), undefined when admitted (it is closed again at once). */
export function tryConnect(url: string, options: IClientOptions): Promise<number | 'tls' | undefined> {
  return new Promise((resolve) => {
    const c = mqtt.connect(url, { reconnectPeriod: 0, connectTimeout: 5000, ...options });
    const done = (v: number | 'tls' | undefined) => {
      c.removeAllListeners();
      c.on('error', () => {});
      c.end(true, () => resolve(v));
    };
    c.once('connect', () => done(undefined));
    c.once('error', (err) => done(typeof (err as { code?: unknown }).code === 'number' ? (err as { code: number }).code : 'tls'));
    c.once('close', () => done('tls'));
  });
}

/** A received message, payload parsed as JSON when possible. */
export interface Received {
  topic: string;
  body: any;
}

/** A connected client with a message log. */
export class TestClient {
  readonly client: MqttClient;
  readonly log: Received[] = [];
  private waiters: { match: (m: Received) => boolean; resolve: (m: Received) => void }[] = [];

  private constructor(client: MqttClient) {
    this.client = client;
    client.on('message', (topic, payload) => {
      let body: unknown;
      try {
        body = JSON.parse(payload.toString());
      } catch {
        body = payload.toString();
      }
      const m = { topic, body };
      this.log.push(m);
      this.waiters = this.waiters.filter((w) => {
        if (!w.match(m)) return true;
        w.resolve(m);
        return false;
      });
    });
  }

  /** Connects with client id `id` (a device id unless `options` says otherwise). */
  static async connect(url: string, id: string, options: IClientOptions = {}): Promise<TestClient> {
    const client = await mqtt.connectAsync(url, { clientId: id, reconnectPeriod: 0, connectTimeout: 5000, ...options });
    return new TestClient(client);
  }

  /** Subscribes; returns the granted QoS per filter (128 = refused). */
  async subscribe(...filters: string[]): Promise<number[]> {
    const out: number[] = [];
    for (const filter of filters) {
      try {
        const [granted] = await this.client.subscribeAsync(filter, { qos: 1 });
        out.push(granted!.qos);
      } catch (err) {
        // mqtt.js turns a SUBACK failure code (0x80) into an error carrying the SUBACK
        const granted = (err as { packet?: { granted?: number[] } }).packet?.granted;
        if (!granted || granted[0] === undefined) throw err;
        out.push(granted[0]);
      }
    }
    return out;
  }

  /** Publishes a JSON body (or a raw string) at QoS 1. */
  async publish(topic: string, body: unknown, opts: { retain?: boolean } = {}): Promise<void> {
    await this.client.publishAsync(topic, typeof body === 'string' || Buffer.isBuffer(body) ? body : JSON.stringify(body), { qos: 1, retain: opts.retain ?? false });
  }

  /** Resolves with the first message (already received or future) that matches. */
  next(match: (m: Received) => boolean, timeoutMs = 10_000): Promise<Received> {
    const seen = this.log.find(match);
    if (seen) return Promise.resolve(seen);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no matching message within ${timeoutMs} ms; got: ${this.log.map((m) => m.topic).join(', ')}`)), timeoutMs);
      this.waiters.push({ match, resolve: (m) => (clearTimeout(timer), resolve(m)) });
    });
  }

  /** Publishes with a clientToken and resolves with the answer on `<topic>/accepted|rejected`. */
  async request(topic: string, body: Record<string, unknown>, token = `t-${Math.random().toString(36).slice(2)}`): Promise<Received> {
    const answer = this.next((m) => (m.topic === `${topic}/accepted` || m.topic === `${topic}/rejected`) && m.body?.clientToken === token);
    await this.publish(topic, { ...body, clientToken: token });
    return answer;
  }

  async end(): Promise<void> {
    await this.client.endAsync();
  }
}

/** Registers `deviceId` on the test server and connects as that device with its secret. */
export async function connectDevice(ts: { mqttUrl: string; server: { registry: { register(r: { deviceId: string }): Promise<{ secret: string }> } } }, deviceId: string): Promise<TestClient> {
  const { secret } = await ts.server.registry.register({ deviceId });
  return TestClient.connect(ts.mqttUrl, deviceId, { username: deviceId, password: secret });
}

/**
 * Registers and connects `deviceId`, subscribed to all of its topics, reporting that it runs
 * fw `running` and is idle: a device ready to be sent an update.
 */
export async function connectIdleDevice(ts: Parameters<typeof connectDevice>[0], deviceId: string, running = '1.0.0'): Promise<TestClient> {
  const dev = await connectDevice(ts, deviceId);
  await dev.subscribe(`state/${deviceId}/#`);
  await dev.request(`state/${deviceId}/update`, { state: { reported: { software: { name: 'fw', version: running, status: 'IDLE' } } } });
  return dev;
}

/**
 * Publishes `n` QoS 1 messages on `topic` from a child process while this process waits for
 * it (spawnSync): whatever subscribes here can neither read nor acknowledge anything until
 * the broker holds every message, as under a burst larger than a subscriber keeps up with.
 * `$i` in `payload` becomes the message's index; returns once the child is done.
 */
export function publishBurstWhileBlocked(url: string, client: { clientId: string; username: string; password: string }, topic: string, n: number, payload: string): void {
  const script = `
    const mqtt = (await import('mqtt')).default;
    const e = process.env;
    const c = await mqtt.connectAsync(e.BURST_URL, { clientId: e.BURST_ID, username: e.BURST_USER, password: e.BURST_PASSWORD, reconnectPeriod: 0 });
    await Promise.all(Array.from({ length: Number(e.BURST_N) }, (_, i) => c.publishAsync(e.BURST_TOPIC, e.BURST_PAYLOAD.replaceAll('$i', String(i)), { qos: 1 })));
    await c.endAsync();`;
  const env = { ...process.env, BURST_URL: url, BURST_ID: client.clientId, BURST_USER: client.username, BURST_PASSWORD: client.password, BURST_TOPIC: topic, BURST_N: String(n), BURST_PAYLOAD: payload };
  const run = spawnSync(process.execPath, ['--input-type=module', '-e', script], { env, encoding: 'utf8', timeout: 120_000 });
  if (run.status !== 0) throw new Error(`the burst publisher failed: ${run.stderr || run.error?.message}`);
}
