/**
 * Admission control at the embedded broker's door: backpressure for connections.
 *
 * Every device connection costs the server's one thread its CONNECT, authentication and
 * subscriptions, and holds memory while it lasts. After an outage a whole fleet reconnects
 * at once; admitted all together, each device then waits behind all the others (measured:
 * with 5,000 devices online on a saturated server, about 3 s from CONNACK to command), and
 * a device that wakes for less than that leaves with nothing. Refusing what the server cannot
 * serve soon, with CONNACK 3 ("server unavailable", MQTT 3.1.1 §3.2.2.3), keeps the admitted
 * devices served promptly; the refused come back after their backoff (the agent's grows
 * with jitter, so a fleet spreads out). Production brokers have the same two limits
 * (Mosquitto `max_connections`; EMQX `max_connections`, `max_conn_rate`).
 *
 * Both limits are off (0) by default: they depend on the machine, and a limit set too low
 * turns devices away from a server with room for them.
 */

/** The two limits; 0 means no limit. */
export interface AdmissionLimits {
  /** Connections held at once (connected, or admitted and authenticating; the operator's count too, though they are never refused). */
  maxConnections: number;
  /** New connections admitted per second: a token bucket holding one second's worth. */
  maxConnectRate: number;
}

/** Why a CONNECT was refused. */
export type Refusal = 'connections' | 'rate';

/** Decides, CONNECT by CONNECT, whether the broker takes one more connection. */
export class ConnectAdmission {
  private readonly limits: AdmissionLimits;
  private readonly now: () => number;
  private tokens: number;
  private refilledAt: number;

  constructor(limits: AdmissionLimits, now: () => number = () => performance.now()) {
    for (const [name, value] of Object.entries(limits)) {
      if (!Number.isInteger(value) || value < 0) throw new Error(`${name} must be a non-negative integer, got ${value}`);
    }
    this.limits = limits;
    this.now = now;
    this.tokens = limits.maxConnectRate;
    this.refilledAt = now();
  }

  /**
   * Admits one more connection (taking a token), or says which limit refuses it. `held` is
   * how many connections the broker holds now, those still authenticating included.
   */
  admit(held: number): Refusal | undefined {
    const { maxConnections, maxConnectRate } = this.limits;
    if (maxConnections > 0 && held >= maxConnections) return 'connections';
    if (maxConnectRate > 0) {
      const t = this.now();
      this.tokens = Math.min(maxConnectRate, this.tokens + ((t - this.refilledAt) / 1000) * maxConnectRate);
      this.refilledAt = t;
      if (this.tokens < 1) return 'rate';
      this.tokens -= 1;
    }
    return undefined;
  }
}
