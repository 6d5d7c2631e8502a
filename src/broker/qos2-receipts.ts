/**
 * The QoS 2 requests each MQTT session has received and not yet seen released, so that a
 * request sent again before its PUBREL is handled once ([MQTT-4.3.3-2], method B: until the
 * PUBREL, a PUBLISH with the same packet id is acknowledged with PUBREC and not delivered
 * again). aedes has this check, but runs it after `authorizePublish`, where the embedded broker
 * hands requests over; and it checks its store, which a copy read in the same batch as the
 * first (before that was stored) passes too.
 *
 * Kept per client id, not per connection: a persistent session (`clean: false`) keeps its
 * receipts across a reconnect, also one that takes over while the first copy is still being
 * handled; a clean session starts with none and takes none with it ([MQTT-3.1.2-6]).
 */

/** What of an aedes client the receipts need. */
export interface SessionClient {
  readonly id: string;
  readonly clean: boolean;
}

/**
 * Receipts one session keeps at most; past it, its oldest go. aedes closes a connection past
 * 1,000 QoS 2 messages awaiting PUBREL (`maxInflightInbound`), so only a session that keeps
 * reconnecting to hold more reaches this: the 16-bit packet ids bound it otherwise.
 */
export const MAX_RECEIPTS_PER_SESSION = 1000;

interface Session {
  /** The handling of each packet id received and not released, in the order received. */
  readonly pending: Map<number, Promise<void>>;
}

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

  /** Records the receipt of a new message and its handling. */
  record(client: SessionClient, messageId: number, handled: Promise<void>): void {
    let session = this.session(client);
    if (!session) {
      session = { pending: new Map() };
      this.ofClient.set(client, session);
    }
    this.sessions.set(client.id, session);
    session.pending.set(messageId, handled);
    if (session.pending.size > MAX_RECEIPTS_PER_SESSION) session.pending.delete(session.pending.keys().next().value!);
  }

  /** A PUBREL: from now on `messageId` names a new message. */
  release(client: SessionClient, messageId: number): void {
    this.session(client)?.pending.delete(messageId);
  }

  /** A connection was accepted: a clean one ends the session held before under its id. */
  connected(client: SessionClient): void {
    if (client.clean && this.sessions.get(client.id) !== this.ofClient.get(client)) this.sessions.delete(client.id);
  }

  /** A connection ended: a clean session ends with it, and a persistent one with nothing to remember is not kept. */
  disconnected(client: SessionClient): void {
    const session = this.ofClient.get(client);
    if (!session || this.sessions.get(client.id) !== session) return;
    if (client.clean || session.pending.size === 0) this.sessions.delete(client.id);
  }

  /** Sessions held (for tests). */
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
