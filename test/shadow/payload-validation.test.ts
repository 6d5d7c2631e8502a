/**
 * What a device sends that the replica cannot store as sent is refused with 400 and the
 * reason, and stores nothing; the connection and the device's next request go on. Real
 * server, real MQTT over TCP, payloads as the QA pass sent them.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { connectDevice, type Received, type TestClient } from '../helpers/mqtt-client.ts';
import { startTestServer, type TestServer } from '../helpers/server.ts';

describe('shadow payload validation', () => {
  let ts: TestServer;
  let dev: TestClient;
  before(async () => {
    // a raised limit, as an operator may set it: room for 30,000 levels of brackets
    ts = await startTestServer({ flags: { 'shadow-max-bytes': 65536 } });
    dev = await connectDevice(ts, 'pv-1');
    await dev.subscribe('state/pv-1/+/accepted', 'state/pv-1/+/rejected', 'state/pv-1/shadow/+/+/accepted', 'state/pv-1/shadow/+/+/rejected', 'state/pv-1/credentials/request/+');
  });
  after(async () => {
    await dev.end();
    await ts.close();
  });

  /** Publishes `payload` (a raw string or bytes) with `token` and resolves with its answer. */
  async function send(topic: string, payload: string | Buffer, token: string): Promise<Received> {
    const answer = dev.next((m) => (m.topic === `${topic}/accepted` || m.topic === `${topic}/rejected`) && m.body?.clientToken === token);
    await dev.publish(topic, payload);
    return answer;
  }

  it('takes a clientToken of 64 characters, emoji counted as one, and echoes it; refuses 65 with 400 (a named shadow: the classic one is the next case\'s)', async () => {
    const emoji = '😀'.repeat(64);
    const answer = await send('state/pv-1/shadow/tok/update', JSON.stringify({ state: { reported: { tok: 1 } }, clientToken: emoji }), emoji);
    assert.equal(answer.topic, 'state/pv-1/shadow/tok/update/accepted');
    const get = await send('state/pv-1/shadow/tok/get', JSON.stringify({ clientToken: emoji }), emoji);
    assert.equal(get.topic, 'state/pv-1/shadow/tok/get/accepted');
    const rejected = dev.next((m) => m.topic === 'state/pv-1/shadow/tok/update/rejected' && m.body?.clientToken === undefined && m.body?.code === 400);
    await dev.publish('state/pv-1/shadow/tok/update', JSON.stringify({ state: { reported: { tok: 2 } }, clientToken: '😀'.repeat(65) }));
    assert.equal((await rejected).body.message, 'Invalid clientToken: must be a string of 1 to 64 characters');
  });

  it('refuses nesting deeper than the limit with 400 whatever its depth, on classic and named shadows', async () => {
    const n = 15_000;
    const deep = '['.repeat(n) + ']'.repeat(n);
    for (const topic of ['state/pv-1/update', 'state/pv-1/shadow/n/update']) {
      const answer = await send(topic, `{"state":{"reported":{"a":${deep}}},"clientToken":"deep"}`, 'deep');
      assert.equal(answer.topic, `${topic}/rejected`);
      assert.deepEqual([answer.body.code, answer.body.message], [400, 'JSON contains too many levels of nesting; maximum is 6']);
    }
    const after = await send('state/pv-1/update', '{"state":{"reported":{"ok":1}},"clientToken":"after"}', 'after');
    assert.equal(after.topic, 'state/pv-1/update/accepted');
    assert.deepEqual((await ts.server.store.getShadow('pv-1', ''))?.state.reported, { ok: 1 });
    assert.equal(await ts.server.store.getShadow('pv-1', 'n'), undefined);
  });

  it('refuses a number beyond the double range with 400 naming it; before, it was stored as null (and cached as Infinity)', async () => {
    const answer = await send('state/pv-1/update', '{"state":{"reported":{"big":1e999}},"clientToken":"inf"}', 'inf');
    assert.equal(answer.topic, 'state/pv-1/update/rejected');
    assert.equal(answer.body.code, 400);
    assert.match(answer.body.message, /^state\.reported\.big is not a finite number/);
    const named = await send('state/pv-1/shadow/inf/update', '{"state":{"desired":{"x":1e999},"reported":{"x":-1e999}},"clientToken":"inf2"}', 'inf2');
    assert.equal(named.topic, 'state/pv-1/shadow/inf/update/rejected');
    assert.match(named.body.message, /^state\.desired\.x is not a finite number/);
    assert.equal((await ts.server.store.getShadow('pv-1', ''))?.state.reported?.big, undefined, 'nothing stored');
    assert.equal(await ts.server.store.getShadow('pv-1', 'inf'), undefined);
  });

  it('refuses bytes that are not UTF-8 with 400 and echoes no clientToken read from them; before, each was stored as U+FFFD', async () => {
    const bad = Buffer.from([0xff, 0xfe, 0xc3]);
    const notUtf8 = 'Invalid JSON: the payload is not UTF-8';
    /** Publishes raw bytes on `topic` and resolves with its not-UTF-8 rejection, whatever token it carries. */
    const refused = async (topic: string, payload: Buffer): Promise<Received> => {
      const answer = dev.next((m) => m.topic === `${topic}/rejected` && m.body?.message === notUtf8);
      await dev.publish(topic, payload);
      return answer;
    };
    const answer = await refused('state/pv-1/update', Buffer.concat([Buffer.from('{"state":{"reported":{"u":"'), bad, Buffer.from('"}},"clientToken":"utf"}')]));
    assert.deepEqual([answer.body.code, answer.body.message], [400, notUtf8]);
    // the token was read leniently (Buffer.toString) and echoed, where the AWS door echoes none:
    // the payload is not JSON text, so what it holds is not read
    assert.equal(answer.body.clientToken, undefined, 'no token echoed from bytes that are not UTF-8');
    assert.equal((await ts.server.store.getShadow('pv-1', ''))?.state.reported?.u, undefined, 'nothing stored');
    // a bad byte in the token itself: read leniently it was "t\uFFFD", a token the device never sent
    const inToken = await refused('state/pv-1/shadow/utf/update', Buffer.concat([Buffer.from('{"state":{"reported":{"u":1}},"clientToken":"t'), bad, Buffer.from('"}')]));
    assert.deepEqual([inToken.body.code, inToken.body.clientToken], [400, undefined]);
    assert.equal(await ts.server.store.getShadow('pv-1', 'utf'), undefined, 'nothing stored');
    // the requests beside the replica read their bodies, and salvage their tokens, the same way
    const cred = await refused('state/pv-1/credentials/request', Buffer.concat([Buffer.from('{"clientToken":"utf2","jobId":"'), bad, Buffer.from('"}')]));
    assert.deepEqual([cred.body.code, cred.body.message, cred.body.clientToken], [400, notUtf8, undefined]);
    // a well-formed request still has its token echoed, on a refusal as on an answer
    const fine = await send('state/pv-1/update', '{"state":{"reported":{"u":"\u00fc"}},"clientToken":"utf3"}', 'utf3');
    assert.equal(fine.topic, 'state/pv-1/update/accepted');
    const refusedFine = await send('state/pv-1/credentials/request', '{"clientToken":"utf4","jobId":5}', 'utf4');
    assert.equal(refusedFine.topic, 'state/pv-1/credentials/request/rejected');
  });
});
