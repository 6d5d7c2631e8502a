/**
 * A connection's QoS 1 and 2 PUBLISH packets acknowledged in the order received: PUBACKs
 * [MQTT-4.6.0-2] and PUBRECs [MQTT-4.6.0-3] (and one with the other, which a client that
 * counts its messages in flight in one window expects too).
 *
 * aedes handles the packets of one socket read concurrently and writes each acknowledgement
 * as soon as that packet is through: a request waits for its handling (embedded-broker.ts),
 * while a PUBLISH the ACL refuses, a presence or a copy of a QoS 2 message held goes at once,
 * and a QoS 2 message delivered to a subscriber waits a turn more than one nobody receives.
 * So a device that pipelined a report and a message on another device's topic got the
 * second PUBACK first. Here each PUBLISH takes its place as aedes hands it over (its
 * `authorizePublish`, called in the order received) and its acknowledgement is let out
 * only after those of the packets before it: aedes writes a PUBACK synchronously when
 * `authorizePublish` lets the packet through, and a PUBREC synchronously when `published`
 * does, or, for a copy of a message it holds, once its store's `incomingGetPacket` found it.
 * The broker calls `release` at those three points.
 *
 * A connection holds nothing here while none of its PUBLISH packets awaits its
 * acknowledgement: its last place goes as that is written.
 */

/** A PUBLISH awaiting its acknowledgement. */
interface Place {
  /** Its connection (aedes's client). */
  client: object;
  /** Every PUBLISH before it has been acknowledged. */
  ready: boolean;
  /** Acknowledged. */
  written: boolean;
  /** Its acknowledgement, held until `ready`. */
  write?: (written: () => void) => void;
  /** The PUBLISH received after it. */
  next?: Place;
}

/** The order of the acknowledgements of each connection's PUBLISH packets. */
export class AckOrder {
  /** The PUBLISH last received on each connection, until it is acknowledged. */
  private readonly last = new WeakMap<object, Place>();
  /** The place of each PUBLISH received and not yet acknowledged. */
  private readonly places = new WeakMap<object, Place>();

  /** `packet`, a QoS 1 or 2 PUBLISH just received on `client`, takes its place; call in the order received. */
  enter(client: object, packet: object): void {
    const last = this.last.get(client);
    const place: Place = { client, ready: !last || last.written, written: false };
    if (last && !last.written) last.next = place;
    this.last.set(client, place);
    this.places.set(packet, place);
  }

  /** Whether `packet` took a place and is not acknowledged yet. */
  waiting(packet: object): boolean {
    return this.places.has(packet);
  }

  /**
   * Runs `write`, which lets `packet`'s acknowledgement out and calls `written` once it is
   * on the socket, as soon as the packets received before it are acknowledged: at once when
   * they are, or when `packet` took no place (a Will, a message of this process, a PUBREL).
   */
  release(packet: object, write: (written: () => void) => void): void {
    const place = this.places.get(packet);
    if (!place) return write(() => {});
    this.places.delete(packet);
    if (place.ready) this.run(place, write);
    else place.write = write;
  }

  /** Writes `place`'s acknowledgement, then each held one after it whose turn comes (a loop: a read holds thousands). */
  private run(place: Place, write: (written: () => void) => void): void {
    let current: Place | undefined = place;
    let currentWrite = write;
    while (current) {
      const now: Place = current;
      let sync = true;
      let following: [Place, (written: () => void) => void] | undefined;
      currentWrite(() => {
        now.written = true;
        const next = now.next;
        now.next = undefined;
        // none received after it awaits its acknowledgement: the connection holds nothing more
        if (!next) {
          if (this.last.get(now.client) === now) this.last.delete(now.client);
          return;
        }
        next.ready = true;
        const held = next.write;
        next.write = undefined;
        if (!held) return;
        if (sync) following = [next, held];
        else this.run(next, held);
      });
      sync = false;
      [current, currentWrite] = following ?? [undefined, currentWrite];
    }
  }
}
