/**
 * Publishing on an external broker without waiting out its outage. mqtt.js keeps a QoS 1
 * publish made while the connection is down (and one whose PUBACK had not come when it
 * dropped) in its outgoing store, sends it again after the reconnect, and calls back only
 * then: a REST request whose change the replica answers over MQTT (DELETE
 * /api/v1/devices/:id, a job's cancel) waited for the whole outage, and so did every API
 * call queued behind a rollout tick sending commands (review, 2026-12-06).
 *
 * What is published is derived from what the store already holds (an answer, a delta, a
 * retained presence): the store is the truth, and a device catches up with `get` when it
 * connects. So the caller does not wait for the broker to come back. A publish settles:
 * - with the PUBACK (QoS 1) or the write (QoS 0), as before, while the connection holds;
 * - at once while the connection is down: held here and sent once the connection is back,
 *   before anything published later, once. Held here, not in mqtt.js's outgoing store: after
 *   a reconnect mqtt.js sends its store one message per round trip (the next only after the
 *   previous one's PUBACK) and restores the subscriptions of its clean session only once the
 *   store is empty, so an instance that held 1,000 messages for a broker 20 ms away heard no
 *   device request for 20 s after the outage (read in mqtt.js 5's client.js, _onConnect and
 *   the 'connect' handler; 2026-12-06). Published at its 'connect', after mqtt.js has sent
 *   the SUBSCRIBEs of that clean session, all at once, as any burst of publishes;
 * - when the connection drops before its PUBACK: held by mqtt.js in its store and sent again
 *   after the reconnect, one per round trip before the subscriptions as above (these are only
 *   the messages in flight at the cut; MQTT QoS 1: a broker that had taken it before dropping
 *   may deliver it twice, §4.3.2; what the replica publishes repeats a state, which devices
 *   take again harmlessly);
 * - after PUBLISH_WAIT_MS without a PUBACK on a connection that looks alive (a network cut
 *   that mqtt.js sees only at its keepalive, up to 22.5 s later, SERVICE_KEEPALIVE_S): still sent, still awaited by
 *   mqtt.js, no longer by the caller.
 * At most MAX_HELD messages are held at once (mqtt.js's store is in memory and its packet
 * ids wrap at 65,535, overwriting a held message of the same id); beyond, the caller waits for
 * the reconnect and its message is published then, after the held ones (backpressure, as before
 * 328a37a, rather than loss: a device that stayed connected to the broker while only this
 * instance was cut off never asks with `get`, and would never get a dropped message). Counted,
 * and logged once per outage.
 *
 * At stop, nothing held is sent (the broker is not there to take it; the store still holds what
 * the messages derive from) and every caller still waiting is released.
 */
import type { IClientPublishOptions, MqttClient } from 'mqtt';
import { ThrottledLog } from '../util/log-throttle.ts';
import type { Logger } from '../util/logger.ts';

/** How long a caller waits for a PUBACK on a connection that looks alive. */
export const PUBLISH_WAIT_MS = 10_000;
/** The most messages held for the reconnect; beyond, the caller waits for the reconnect. */
export const MAX_HELD = 10_000;

/** A publish whose caller waits for its PUBACK. */
interface Waiting {
  since: number;
  qos: number;
  resolve: () => void;
  /** Released when the connection dropped: mqtt.js holds it, counted in `held` until it calls back. */
  held?: boolean;
}

/** Publishes on one mqtt.js client with the bounded wait above. */
export class BoundedPublisher {
  private readonly client: MqttClient;
  private readonly logger: Logger;
  private readonly fields: Record<string, unknown>;
  private readonly waiting = new Set<Waiting>();
  /** Messages mqtt.js holds for the reconnect now. */
  private held = 0;
  /** This outage's messages held and those whose callers waited for the reconnect, for the "back" line. */
  private outage = { held: 0, waited: 0 };
  /** Messages published while the connection was down, in order, sent at the reconnect (top of this file). */
  private readonly queued: { topic: string; payload: string | Buffer; opts: IClientPublishOptions }[] = [];
  /** Callers beyond MAX_HELD, waiting for the reconnect (or the stop) to publish. */
  private readonly overflow: (() => void)[] = [];
  private stopped = false;
  private sweepTimer: NodeJS.Timeout | undefined;
  private slowLog: ThrottledLog | undefined;
  private readonly onClose = () => this.connectionLost();
  private readonly onConnect = () => this.reconnected();

  constructor(client: MqttClient, logger: Logger, fields: Record<string, unknown>) {
    this.client = client;
    this.logger = logger;
    this.fields = fields;
  }

  /** Watches the connection and the waits. */
  start(): void {
    this.client.on('close', this.onClose);
    this.client.on('connect', this.onConnect);
    this.slowLog = new ThrottledLog(this.logger);
    this.sweepTimer = setInterval(() => this.sweep(), Math.min(1_000, PUBLISH_WAIT_MS)).unref();
  }

  /** Publishes; settles as the top of this file says (rejects only for an error mqtt.js reports on a live connection). */
  publish(topic: string, payload: string | Buffer, opts: IClientPublishOptions): Promise<void> {
    const client = this.client;
    if (this.stopped) return Promise.resolve(); // lost at stop, as what is held (top of this file)
    // also while connected with messages still queued: mqtt.js says connected from its CONNACK
    // but emits 'connect' (where the queue is sent) only after its own store, and a later
    // message must not overtake a held one (a newer delta before an older one)
    if (!client.connected || this.queued.length > 0) {
      if (this.held >= MAX_HELD) {
        if (this.outage.waited++ === 0) this.logger.warn(`MQTT broker unreachable and ${MAX_HELD} messages held for it already: publishers wait for the reconnect (nothing is dropped)`, { ...this.fields, topic });
        // published once the connection is back (after the held ones), or released at stop
        return new Promise<void>((resolve, reject) => this.overflow.push(() => this.publish(topic, payload, opts).then(resolve, reject)));
      }
      this.hold();
      this.queued.push({ topic, payload, opts });
      return Promise.resolve();
    }
    return new Promise<void>((resolve, reject) => {
      const w: Waiting = { since: Date.now(), qos: opts.qos ?? 0, resolve };
      this.waiting.add(w);
      client.publish(topic, payload, opts, (err) => {
        if (this.waiting.delete(w)) return err ? reject(err) : resolve();
        if (w.held) this.held--; // sent (or given up) after the reconnect
      });
    });
  }

  /** The connection is back (mqtt.js has sent what it held): this outage's counts, reset. */
  back(): { held: number; waited?: number } {
    const { held, waited } = this.outage;
    this.outage = { held: 0, waited: 0 };
    return { held, ...(waited > 0 ? { waited } : {}) };
  }

  /** Releases every caller still waiting and stops watching. */
  stop(): void {
    this.stopped = true;
    this.client.removeListener('close', this.onClose);
    this.client.removeListener('connect', this.onConnect);
    clearInterval(this.sweepTimer);
    this.sweepTimer = undefined;
    this.slowLog?.close();
    for (const w of this.waiting) w.resolve();
    this.waiting.clear();
    // their messages are lost, as what mqtt.js holds: publish() settles at once once stopped
    this.queued.length = 0;
    this.releaseOverflow();
  }

  /**
   * The connection is back: mqtt.js has sent its store and, in its own 'connect' listener (the
   * first one, registered when the client was made), the SUBSCRIBEs of its clean session. The
   * held messages go now, in their order, then the callers that waited beyond MAX_HELD.
   */
  private reconnected(): void {
    const client = this.client;
    for (const m of this.queued.splice(0)) {
      // settled by then, as far as the caller knows; mqtt.js keeps it if the connection drops again
      client.publish(m.topic, m.payload, m.opts, () => this.held--);
    }
    this.releaseOverflow();
  }

  /** The callers beyond MAX_HELD publish, in their order (the connection is back, or at stop). */
  private releaseOverflow(): void {
    for (const go of this.overflow.splice(0)) go();
  }

  private hold(): void {
    this.held++;
    this.outage.held++;
  }

  /** The connection dropped: the publishes waiting for a PUBACK are held by mqtt.js now; their callers go on. */
  private connectionLost(): void {
    for (const w of this.waiting) {
      // a QoS 0 message is not kept (mqtt.js only waited for the socket to drain)
      if (w.qos > 0) {
        w.held = true;
        this.hold();
      }
      w.resolve();
    }
    this.waiting.clear();
  }

  /** Releases the callers that waited PUBLISH_WAIT_MS for a PUBACK (oldest first). */
  private sweep(): void {
    const due = Date.now() - PUBLISH_WAIT_MS;
    let late = 0;
    for (const w of this.waiting) {
      if (w.since > due) break;
      this.waiting.delete(w);
      w.resolve();
      late++;
    }
    if (late > 0) this.slowLog?.warn(`MQTT broker: no acknowledgement in ${PUBLISH_WAIT_MS / 1000} s; the messages are still sent, their callers go on`, { ...this.fields, messages: late });
  }
}
