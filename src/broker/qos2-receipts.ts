/**
 * The QoS 2 messages each MQTT session has received and not yet seen released, so that a
 * request sent again before its PUBREL is handled once ([MQTT-4.3.3-2], method B: until the
 * PUBREL, a PUBLISH with the same packet id is acknowledged with PUBREC and not delivered
 * again). aedes has this check, but runs it after `authorizePublish`, where the embedded broker
 * hands requests over; and it checks its store, which a copy read in the same batch as the
 * first (before that was stored) passes too.
 *
 * They also bound what a session may hold: aedes keeps every QoS 2 PUBLISH it acknowledges
 * (its incoming store, per client id) until the PUBREL, and its own limit
 * (`maxInflightInbound`, 1,000 by default, set to 2,000 here) counts per connection, from
 * zero at each reconnect. A device that withheld its PUBRELs on a persistent session held
 * 900 messages of 60 KB more at each reconnect (QA: 4 reconnects, 250 MB). Here a session
 * holds at most `limit` messages, over all its connections; the embedded broker holds one
 * more back until a PUBREL frees a place (inbound-gate.ts), and lets aedes store only what a
 * session holds (embedded-broker.ts).
 *
 * Kept per client id, not per connection: a persistent session (`clean: false`) keeps its
 * receipts across a reconnect, also one that takes over while the first copy is still being
 * handled; a clean session starts with none and takes none with it ([MQTT-3.1.2-6]). Sessions
 * end in one place, `discard`, which the embedded broker calls wherever aedes empties an id's
 * store (its `cleanIncoming`: as a clean session begins, after a connection of the id it takes
 * over, and as one ends); and a session with nothing awaiting its PUBREL is held under no id.
 */

/** What of an aedes client the receipts need. */
export interface SessionClient {
  readonly id: string;
  readonly clean: boolean;
}

/**
 * QoS 2 messages a device's session may hold awaiting their PUBREL, over all its connections.
 * The agent publishes at QoS 1, and AWS IoT Core takes no QoS 2, so its SDKs never send
 * one; a client that publishes at QoS 2 needs a handful in flight: the embedded broker
 * handles one device's requests in order and reads its next packets once its last read is
 * handled, so more buys no speed, and client libraries that cap their messages in flight cap
 * them at 10 (Paho Java, Paho C's synchronous client) or 20 (libmosquitto). So 20: with the
 * 64 KiB packet limit, at most 1.25 MiB per device id.
 */
export const MAX_DEVICE_QOS2_AWAITING_RELEASE = 20;

/** The same for the operator's tools, trusted: as many as aedes's default limit per connection. */
export const MAX_OPERATOR_QOS2_AWAITING_RELEASE = 1000;

/**
 * aedes's own limit of QoS 2 messages awaiting their PUBREL per connection
 * (`maxInflightInbound`), which the embedded broker sets: twice the largest session's, so
 * ours is always the one met. aedes counts a message out in its handling of the PUBREL,
 * after its store's delete, a few promise callbacks after ours (taken as aedes receives the
 * PUBREL), and the PUBLISH that waited for that place is checked against aedes's count as
 * soon as ours lets it through: with the two limits equal (aedes's default is 1,000), an
 * operator pipelining past 1,000 stayed connected only because the store's delete took no
 * longer than that, and a delete one turn of the event loop slower closed the connection
 * ("maxInflightInbound exceeded"). aedes's count runs ahead of ours by the PUBRELs whose
 * deletes are under way: a session's worth at most, in one read.
 */
export const AEDES_MAX_INFLIGHT_INBOUND = 2 * MAX_OPERATOR_QOS2_AWAITING_RELEASE;

interface Session {
  /** The handling of each packet id received and not released, in the order received. */
  readonly pending: Map<number, Promise<void>>;
}

const handledAlready = Promise.resolve();

/** Receipts of QoS 2 messages per MQTT session, until their PUBREL. */
export class Qos2Receipts {
  /** The session under each client id that has one (a persistent one outlives its connections). */
  private readonly sessions = new Map<string, Session>();
  /** The session each connection belongs to, once it used one. */
  private readonly ofClient = new WeakMap<SessionClient, Session>();

  /** The handling of an earlier receipt of `messageId` in the client's session, not released since; undefined for a new message. */
  earlier(client: SessionClient, messageId: number): Promise<void> | undefined {
    return this.session(client)?.pending.get(messageId);
  }

  /**
   * Takes a new message into the client's session, awaiting its PUBREL; false, and nothing
   * taken, when the session already holds `limit` (refused, not evicted: an evicted receipt
   * would let a copy be handled again, and aedes would still hold the message).
   */
  admit(client: SessionClient, messageId: number, limit: number): boolean {
    let session = this.session(client);
    if (session?.pending.has(messageId)) return true;
    if (session && session.pending.size >= limit) return false;
    if (!session) {
      session = { pending: new Map() };
      this.ofClient.set(client, session);
      this.sessions.set(client.id, session);
    } else if (!this.sessions.has(client.id)) {
      // discarded under a live connection (aedes emptied the id's store as an older clean
      // connection closed): its own again. One held under the id is a newer connection's.
      this.sessions.set(client.id, session);
    }
    session.pending.set(messageId, handledAlready);
    return true;
  }

  /** Whether `admit` would take `messageId` (held already, or a place free under `limit`). */
  hasRoom(client: SessionClient, messageId: number, limit: number): boolean {
    const session = this.session(client);
    return !session || session.pending.has(messageId) || session.pending.size < limit;
  }

  /** The handling of an admitted message: a copy received before its PUBREL waits for it. */
  handling(client: SessionClient, messageId: number, handled: Promise<void>): void {
    const pending = this.session(client)?.pending;
    if (pending?.has(messageId)) pending.set(messageId, handled);
  }

  /** Whether the client's session, still the one under its id, awaits the PUBREL of `messageId`. */
  holds(client: SessionClient, messageId: number): boolean {
    const own = this.ofClient.get(client);
    return own !== undefined && this.sessions.get(client.id) === own && own.pending.has(messageId);
  }

  /**
   * A PUBREL: from now on `messageId` names a new message. A session left with nothing to
   * remember is no longer held under its id (a persistent one would otherwise stay for
   * good); its connection keeps it, and its next message holds it again (`admit`).
   */
  release(client: SessionClient, messageId: number): void {
    const session = this.session(client);
    if (!session?.pending.delete(messageId) || session.pending.size > 0) return;
    if (this.sessions.get(client.id) === session) this.sessions.delete(client.id);
  }

  /** The session under `clientId` is discarded (aedes emptied its store of the id's messages). */
  discard(clientId: string): void {
    this.sessions.delete(clientId);
  }

  /** Sessions held under a client id: what outlives connections, so what must not grow (tests check it). */
  get size(): number {
    return this.sessions.size;
  }

  /** The client's session: its own, or for a persistent one, the one held under its id. */
  private session(client: SessionClient): Session | undefined {
    const own = this.ofClient.get(client);
    if (own || client.clean) return own;
    const held = this.sessions.get(client.id);
    if (held) this.ofClient.set(client, held);
    return held;
  }
}
