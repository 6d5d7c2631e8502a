/**
 * coalesceWrites (embedded-broker.ts) gives every connection's socket one shared `write`,
 * which calls Node's through the socket's prototype, and hides its `cork`. A Node whose
 * sockets have their own `write` or `cork` makes the broker refuse to start, as its other
 * guards do (this check ran as each connection came, and closed every one).
 */
import assert from 'node:assert/strict';
import net from 'node:net';
import { describe, it } from 'node:test';
import { assertStartRefused } from './aedes-patch.ts';

describe("embedded broker: Node's sockets, checked at start", () => {
  it('a Node whose sockets get their own write as they are made: start rejects with the reason', async () => {
    // the socket's constructor assigns `_host`; a setter of the class in its place gives each
    // socket a write of its own, as a Node that assigned one in the constructor would
    const proto = net.Socket.prototype as unknown as Record<string, unknown>;
    assert.equal(Object.getOwnPropertyDescriptor(proto, '_host'), undefined);
    Object.defineProperty(proto, '_host', {
      set(this: net.Socket, host: unknown) {
        Object.defineProperty(this, '_host', { value: host, writable: true, configurable: true, enumerable: true });
        Object.defineProperty(this, 'write', { value: net.Socket.prototype.write, writable: true, configurable: true });
      },
      configurable: true,
    });
    try {
      const probe = new net.Socket();
      assert.ok(Object.hasOwn(probe, 'write'), 'the change took');
      probe.destroy();
      await assertStartRefused(/a socket with its own write or cork/);
    } finally {
      delete proto._host;
    }
  });
});
