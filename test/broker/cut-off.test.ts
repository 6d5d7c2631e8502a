/**
 * Access withdrawn from a device (revoked, or a new secret) while it is connecting: the
 * embedded broker must not let the connection in on the strength of a check made before.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { Authenticator, ConnectCredentials } from '../../src/broker/authenticator.ts';
import { EmbeddedBroker } from '../../src/broker/embedded-broker.ts';
import { silentLogger } from '../../src/util/logger.ts';
import { connackCode } from '../helpers/mqtt-client.ts';

/**
 * Admits every device, each once `release` is called: like the registry's check, which reads
 * the store, the answer is decided before it arrives (here: before the test cuts the device off).
 */
class HeldAuthenticator implements Authenticator {
  private held: (() => void)[] = [];
  private arrived: (() => void)[] = [];
  async authenticate(c: ConnectCredentials) {
    await new Promise<void>((resolve) => {
      this.held.push(resolve);
      for (const a of this.arrived.splice(0)) a();
    });
    return { kind: 'device' as const, id: c.clientId };
  }
  /** Resolves once a CONNECT is being authenticated. */
  waitForOne(): Promise<void> {
    return this.held.length > 0 ? Promise.resolve() : new Promise((resolve) => this.arrived.push(resolve));
  }
  release(): void {
    for (const h of this.held.splice(0)) h();
  }
}

describe('cutting a device off while it connects', () => {
  const auth = new HeldAuthenticator();
  const broker = new EmbeddedBroker({ port: 0, host: '127.0.0.1', authenticator: auth, logger: silentLogger });
  let url: string;
  before(async () => {
    await broker.start();
    url = `mqtt://127.0.0.1:${broker.port}`;
  });
  after(() => broker.stop());

  it('refuses with CONNACK 4 a connection whose device was cut off while it was authenticated; a later one gets in', async () => {
    const attempt = connackCode(url, { clientId: 'dev-a' });
    await auth.waitForOne();
    assert.equal(broker.cutOff('dev-a', { certificates: true }), 0, 'not connected yet');
    auth.release();
    assert.equal(await attempt, 4);
    // its next CONNECT began after the cut: the authenticator decides alone again
    const next = connackCode(url, { clientId: 'dev-a' });
    await auth.waitForOne();
    auth.release();
    assert.equal(await next, undefined);
  });

  it('refuses a connection without a certificate when only the secret changed', async () => {
    const attempt = connackCode(url, { clientId: 'dev-d' });
    await auth.waitForOne();
    broker.cutOff('dev-d', { certificates: false });
    auth.release();
    assert.equal(await attempt, 4);
  });

  it('leaves alone a connection of another device', async () => {
    const other = connackCode(url, { clientId: 'dev-b' });
    await auth.waitForOne();
    broker.cutOff('dev-c', { certificates: true });
    auth.release();
    assert.equal(await other, undefined);
  });
});
