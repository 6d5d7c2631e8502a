/**
 * How an instance connects to an external broker (real Mosquitto, real server): a user name
 * and password in mqtt.url are left out and said (the instance connects as `operator` with
 * its token; the URL's took their place, and the start failed naming a user it had not sent),
 * and a broker that refuses its CONNACK once the instance runs is tried again until it admits
 * it (mqtt.js gave up for good at the first refusal: the instance stayed out of service).
 */
import assert from 'node:assert/strict';
import { mkdtemp, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { describe, it } from 'node:test';
import { mosquittoPasswd } from '../../src/broker/mosquitto-config.ts';
import { createLogger } from '../../src/util/logger.ts';
import { eventually } from '../helpers/cli.ts';
import { findMosquitto, mosquittoUnavailable, startTestMosquitto } from '../helpers/mosquitto.ts';
import { startTestServer } from '../helpers/server.ts';

const TOKEN = `updr_url_credentials_test_${'x'.repeat(22)}`;
const found = findMosquitto();

if (!found.ok) {
  const message = mosquittoUnavailable(found.reason, 'external broker URL credentials test');
  it('mqtt.url with a user and password: said at start', (t) => t.skip(message));
} else {
  describe('mqtt.url with a user name and password', () => {
    it('is said at start (not used: the server connects as operator), without the password, and the server serves', async () => {
      const broker = await startTestMosquitto(found.bin, { operatorToken: TOKEN, devices: [], secrets: new Map() });
      const dataDir = await mkdtemp(path.join(os.tmpdir(), 'updraft-url-credentials-'));
      await writeFile(path.join(dataDir, 'operator-token'), TOKEN + '\n', { mode: 0o600 });
      const lines: string[] = [];
      const url = new URL(broker.serviceUrl);
      url.username = 'someone';
      url.password = 'not-used-SECRET';
      const ts = await startTestServer({ dataDir, flags: { 'mqtt-url': url.toString(), 'mqtt-tls-port': -1 }, logger: createLogger({ level: 'warn', write: (l) => lines.push(l) }) });
      // (until 2026-12-06 the URL's user took the operator's place: the start failed, 'refused user operator')
      try {
        const said = lines.filter((l) => /mqtt\.url carries a user name or password, which are not used/.test(l));
        assert.equal(said.length, 1, lines.join('\n'));
        assert.match(said[0]!, /connects to the broker as operator with its operator token/);
        assert.ok(!lines.some((l) => l.includes('not-used-SECRET')), 'the password is in no line');
        // connected as operator all the same: the API answers and the broker is ready
        assert.equal((await fetch(`${ts.httpUrl}/readyz`)).status, 200);
      } finally {
        await ts.close();
        await broker.stop();
      }
    });
  });

  describe('a broker that refuses the instance once it runs', () => {
    it('is tried again until it admits it: the instance serves again without a restart', { timeout: 90_000 }, async () => {
      const broker = await startTestMosquitto(found.bin, { operatorToken: TOKEN, devices: [], secrets: new Map() });
      const dataDir = await mkdtemp(path.join(os.tmpdir(), 'updraft-broker-refuses-'));
      await writeFile(path.join(dataDir, 'operator-token'), TOKEN + '\n', { mode: 0o600 });
      const ts = await startTestServer({ dataDir, flags: { 'mqtt-url': broker.serviceUrl, 'mqtt-tls-port': -1 } });
      const ready = async () => (await fetch(`${ts.httpUrl}/readyz`)).status;
      const passwd = (operatorToken: string) => writeFile(path.join(broker.dir, 'passwd'), mosquittoPasswd({ operatorToken, devices: [], secrets: new Map() }).text);
      try {
        assert.equal(await ready(), 200);
        // the broker comes back with a password file that does not admit this instance (a
        // slip while it was rewritten): each reconnect is refused, Not authorized
        await broker.down();
        await passwd(`updr_some_other_token_${'y'.repeat(26)}`);
        await broker.up();
        await eventually(async () => ((await ready()) === 503 ? true : undefined), 20_000, 'the instance not ready while refused');
        // let a few of its attempts be refused
        await new Promise((r) => setTimeout(r, 3_000));
        assert.equal(await ready(), 503);
        // the file put right and read again: the instance is admitted at its next attempt
        await passwd(TOKEN);
        await broker.reload();
        await eventually(async () => ((await ready()) === 200 ? true : undefined), 30_000, 'the instance connected again without a restart');
      } finally {
        await ts.close();
        await broker.stop();
      }
    });
  });
}
