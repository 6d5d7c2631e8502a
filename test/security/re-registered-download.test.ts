/**
 * A URL or download token issued to a device that was deleted since does not open its
 * artifact for the device registered again under the same id: it was the earlier device's.
 * The URLs and tokens are signed with the server's own key ring (read from its data
 * directory), dated as a command sent ten minutes before the id was registered again.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { loadOrCreateKeyRing } from '../../src/artifacts/key-ring.ts';
import { UrlSigner } from '../../src/artifacts/url-signer.ts';
import { DownloadTokens } from '../../src/credentials/download-token.ts';
import { registerDevice, startTestServer, type TestServer } from '../helpers/server.ts';
import { addArtifact } from './support.ts';

describe('downloads of a device id registered again', () => {
  let ts: TestServer;
  let keys: Awaited<ReturnType<typeof loadOrCreateKeyRing>>;
  let fw: { name: string; version: string; sha256: string };
  before(async () => {
    ts = await startTestServer();
    await addArtifact(ts, '2.0.0', randomBytes(2000));
    const a = (await ts.server.store.getArtifact('fw', '2.0.0'))!;
    fw = { name: a.name, version: a.version, sha256: a.sha256 };
    keys = await loadOrCreateKeyRing(ts.dataDir);
  });
  after(() => ts.close());

  const api = (method: string, route: string) => fetch(`${ts.httpUrl}${route}`, { method, headers: { authorization: `Bearer ${ts.token}` } });
  /** A URL and a token for `id`, issued `agoSeconds` ago with the server's lifetimes (1 h, 15 min). */
  const grants = (id: string, agoSeconds: number) => {
    const then = () => Date.now() - agoSeconds * 1000;
    const at = Math.floor(then() / 1000);
    const url = new UrlSigner({ keys, baseUrl: ts.httpUrl, now: then }).sign({ deviceId: id, ...fw, expiresAt: at + 3600 });
    return { url, token: new DownloadTokens({ keys, now: then }).issue({ deviceId: id, ...fw, expiresAt: at + 900 }) };
  };
  const download = async (g: { url: string; token: string }, id: string) => {
    const byUrl = await fetch(g.url);
    const byToken = await fetch(`${ts.httpUrl}${UrlSigner.path(fw.name, fw.version)}?device=${id}`, { headers: { authorization: `Bearer ${g.token}` } });
    return { url: byUrl.status, urlText: await byUrl.text(), token: byToken.status, tokenText: await byToken.text() };
  };

  it('refuses the earlier device\'s URL and token, and serves the new device\'s', async () => {
    // the first device has been in the fleet for a day: its registration, dated so, written to the store
    const day = Date.now() - 86_400_000;
    await ts.server.store.createDevice({ deviceId: 'dev-r', attributes: {}, tags: [], revoked: false, createdAt: day, updatedAt: day, version: 1 });
    const old = grants('dev-r', 600); // sent to the first device ten minutes ago
    const served = await download(old, 'dev-r');
    assert.deepEqual([served.url, served.token], [200, 200], `its own registration: served ${JSON.stringify(served).slice(0, 400)}`);
    assert.equal((await api('DELETE', '/api/v1/devices/dev-r')).status, 200);
    await registerDevice(ts, 'dev-r'); // a new device, given the id again
    const refused = await download(old, 'dev-r');
    assert.deepEqual([refused.url, refused.token], [403, 403], JSON.stringify(refused));
    assert.match(refused.urlText, /issued to an earlier registration of this device id \(deleted since\); ask for a fresh one/);
    assert.match(refused.tokenText, /issued to an earlier registration of this device id/);
    // taken in the last seconds before the deletion (a stolen device's secret asks for one at
    // will): the earlier device's too; it was served for a minute after the registration
    const late = await download(grants('dev-r', 5), 'dev-r');
    assert.deepEqual([late.url, late.token], [403, 403], `issued 5 s before the new registration: ${JSON.stringify(late).slice(0, 300)}`);
    const fresh = await download(grants('dev-r', 0), 'dev-r');
    assert.deepEqual([fresh.url, fresh.token], [200, 200], 'what is issued to the new device is served');
  });
});
