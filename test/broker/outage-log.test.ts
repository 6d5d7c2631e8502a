/**
 * A broker outage under a production-style instance is a few log lines, not two a second: a
 * real (private) Mosquitto stopped while the real ExternalBroker and EventRelay reconnect to
 * it every 50 ms, then started again. Before, each failed attempt was a WARN of each
 * (QA: 44 of each for 45 s).
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { ExternalBroker } from '../../src/broker/external-broker.ts';
import { EventRelay } from '../../src/cluster/event-relay.ts';
import { EventBus } from '../../src/events/event-bus.ts';
import { createLogger } from '../../src/util/logger.ts';
import { eventually } from '../helpers/cli.ts';
import { findMosquitto, mosquittoUnavailable, startTestMosquitto, type TestMosquitto } from '../helpers/mosquitto.ts';

const TOKEN = `updr_outage_test_${'o'.repeat(24)}`;
const found = findMosquitto();

if (!found.ok) {
  const message = mosquittoUnavailable(found.reason, 'broker outage log test');
  it('broker outage log', (t) => t.skip(message));
} else {
  describe('broker outage log', () => {
    let broker: TestMosquitto;
    const stops: (() => Promise<void>)[] = [];
    before(async () => {
      broker = await startTestMosquitto(found.bin, { operatorToken: TOKEN, devices: [], secrets: new Map() });
    });
    after(async () => {
      for (const stop of stops.reverse()) await stop();
      await broker?.stop();
    });

    it('writes the first error of an outage, the count of the others when the broker is back, and a line saying so', async () => {
      const lines: { component?: string; level: string; msg: string; suppressed?: number; errors?: number }[] = [];
      const logger = createLogger({ level: 'debug', format: 'json', write: (l) => lines.push(JSON.parse(l)) });
      const bus = new ExternalBroker({ url: broker.serviceUrl, username: 'operator', password: TOKEN, shareGroup: 'outage', logger: logger.child('mqtt'), reconnectPeriodMs: 50 });
      await bus.start();
      stops.push(() => bus.stop());
      const relay = new EventRelay({ url: broker.serviceUrl, username: 'operator', password: TOKEN, events: new EventBus(), logger: logger.child('events'), reconnectPeriodMs: 50 });
      await relay.start();
      stops.push(() => relay.stop());

      const of = (component: string, msg: string) => lines.filter((l) => l.component === component && l.msg === msg);
      const attempts = () => of('mqtt', 'reconnecting to the MQTT broker').length;
      await broker.down();
      // at least 12 failed reconnect attempts of each connection (each an ECONNREFUSED)
      await eventually(async () => (attempts() >= 12 && of('events', 'event relay: MQTT error').length >= 1 ? true : undefined), 20_000, '12 reconnect attempts');
      assert.equal(of('mqtt', 'MQTT broker error').length, 1, `one line for ${attempts()} failed attempts of the request connection`);
      assert.equal(of('events', 'event relay: MQTT error').length, 1, 'one line for the relay’s');
      assert.equal(of('mqtt', 'MQTT broker error')[0]!.level, 'warn');

      await broker.up();
      await eventually(async () => (of('mqtt', 'MQTT broker connection back').length === 1 && of('events', 'event relay: the broker is back').length === 1 ? true : undefined), 20_000, 'both connections back');
      for (const [component, msg, back] of [
        ['mqtt', 'MQTT broker error', 'MQTT broker connection back'],
        ['events', 'event relay: MQTT error', 'event relay: the broker is back'],
      ] as const) {
        const errors = of(component, msg);
        assert.equal(errors.length, 2, `${component}: the first error and, once back, the count of those left out`);
        assert.equal(errors[0]!.suppressed, undefined);
        assert.ok(errors[1]!.suppressed! >= 5, `${component}: ${errors[1]!.suppressed} left out`);
        const [line] = of(component, back);
        assert.equal(line!.level, 'info');
        assert.equal(line!.errors, errors[1]!.suppressed! + 1, `${component}: the back line counts the outage's errors`);
      }

      // the next outage starts again with its first error written at once
      await broker.down();
      await eventually(async () => (of('mqtt', 'MQTT broker error').length === 3 && of('events', 'event relay: MQTT error').length === 3 ? true : undefined), 20_000, 'the second outage’s first errors');
      await broker.up();
      await eventually(async () => (of('mqtt', 'MQTT broker connection back').length === 2 && of('events', 'event relay: the broker is back').length === 2 ? true : undefined), 20_000, 'both connections back again');
    });
  });
}
