/**
 * A device revoked (or deleted) while it downloads loses the download at once, on this
 * instance and, through the relayed `device.credentials` event, on the others: the
 * download route checks the device when a request starts, and a large build on a slow link
 * used to go on streaming for minutes after `updraft device revoke`, and be installed.
 */
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { loadOrCreateKeyRing } from '../../src/artifacts/key-ring.ts';
import { UrlSigner } from '../../src/artifacts/url-signer.ts';
import { eventually } from '../helpers/cli.ts';
import { registerDevice, startTestServer, type TestServer } from '../helpers/server.ts';

/** A download read by hand: its first bytes, then stalled (a slow device) until `finish`. */
interface SlowDownload {
  received: number;
  /** Reads the rest: how many bytes came in all, and the error that ended it, if one did. */
  finish(): Promise<{ received: number; error?: string }>;
}

async function startDownload(url: string): Promise<SlowDownload> {
  const res = await fetch(url);
  assert.equal(res.status, 200);
  const reader = res.body!.getReader();
  const first = await reader.read();
  const d: SlowDownload = {
    received: first.value?.length ?? 0,
    finish: async () => {
      try {
        for (;;) {
          const { done, value } = await reader.read();
          if (done) return { received: d.received };
          d.received += value.length;
        }
      } catch (err) {
        return { received: d.received, error: (err as Error).message };
      }
    },
  };
  return d;
}

describe('a device revoked while it downloads', () => {
  let ts: TestServer;
  let signer: UrlSigner;
  // large enough that the kernel's socket buffers cannot take it before the device reads it;
  // one streamed from storage, one served from the memory cache (under an eighth of it)
  const streamed = randomBytes(48 * 1024 * 1024);
  const held = randomBytes(24 * 1024 * 1024);
  // small enough that the kernels' buffers take all of it at once
  const small = randomBytes(3 * 1024 * 1024);
  const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');
  const api = (method: string, route: string, body?: Buffer) =>
    fetch(ts.httpUrl + route, { method, headers: { authorization: `Bearer ${ts.token}`, 'content-type': 'application/octet-stream' }, ...(body ? { body: new Uint8Array(body) } : {}) });
  const url = (deviceId: string, version: string, bytes: Buffer) => signer.sign({ deviceId, name: 'fw', version, sha256: sha(bytes), expiresAt: Math.floor(Date.now() / 1000) + 300 });
  type Downloads = { downloads: { served: number; bytes: number; cut: number } };
  const metrics = async () => ((await (await api('GET', '/api/v1/metrics')).json()) as Downloads).downloads;

  before(async () => {
    ts = await startTestServer({ flags: { 'download-cache-bytes': 256 * 1024 * 1024 } });
    for (const id of ['dev-revoked', 'dev-deleted', 'dev-elsewhere', 'dev-ok', 'dev-small']) await registerDevice(ts, id);
    for (const [version, bytes] of [['2.0.0', streamed], ['2.1.0', held], ['2.2.0', small]] as const) {
      const added = await api('POST', `/api/v1/artifacts?name=fw&version=${version}`, bytes);
      assert.equal(added.status, 201, await added.clone().text());
    }
    signer = new UrlSigner({ keys: await loadOrCreateKeyRing(ts.dataDir), baseUrl: ts.httpUrl });
  });
  after(() => ts.close());

  /** Waits until the server has counted `n` more downloads cut than `before`. */
  const cutCounted = (before: number, n: number) => eventually(async () => ((await metrics()).cut >= before + n ? true : undefined), 15_000, `the server to end ${n} download(s) of the device`);

  it('loses it when revoked: the transfer ends short, and its resumption is refused', async () => {
    const { cut } = await metrics();
    const streaming = await startDownload(url('dev-revoked', '2.0.0', streamed));
    const holding = await startDownload(url('dev-revoked', '2.1.0', held));
    const other = await startDownload(url('dev-ok', '2.0.0', streamed));
    assert.equal((await api('POST', '/api/v1/devices/dev-revoked/revoke')).status, 200);
    await cutCounted(cut, 2);

    for (const [d, bytes] of [[streaming, streamed], [holding, held]] as const) {
      const end = await d.finish();
      assert.ok(end.received < bytes.length, `truncated: ${end.received} of ${bytes.length} bytes`);
    }
    // the agent resumes a cut download with Range: refused
    const resumed = await fetch(url('dev-revoked', '2.0.0', streamed), { headers: { range: 'bytes=1000-' } });
    assert.equal(resumed.status, 403);
    assert.match(((await resumed.json()) as { error: { message: string } }).error.message, /device revoked/);
    // another device's download goes on, whole
    assert.deepEqual(await other.finish(), { received: streamed.length });
  });

  it('loses a build the server has written whole but the device has not read yet (all of it in the kernels\' buffers)', async () => {
    const { bytes, cut } = await metrics();
    const d = await startDownload(url('dev-small', '2.2.0', small));
    // the server handed the last byte to the kernel: the response is over (connection: close),
    // the bytes on their way; the connection is still the server's to reset
    await eventually(async () => ((await metrics()).bytes >= bytes + small.length ? true : undefined), 15_000, 'the response written whole');
    assert.equal((await api('POST', '/api/v1/devices/dev-small/revoke')).status, 200);
    await cutCounted(cut, 1);
    const end = await d.finish();
    assert.ok(end.received < small.length, `truncated: ${end.received} of ${small.length} bytes`);
  });

  it('loses it when deleted', async () => {
    const { cut } = await metrics();
    const d = await startDownload(url('dev-deleted', '2.1.0', held));
    assert.equal((await api('DELETE', '/api/v1/devices/dev-deleted')).status, 200);
    await cutCounted(cut, 1);
    const end = await d.finish();
    assert.ok(end.received < held.length, `truncated: ${end.received} of ${held.length} bytes`);
  });

  it('loses it when revoked on another instance (its device.credentials event, relayed)', async () => {
    const { cut } = await metrics();
    const d = await startDownload(url('dev-elsewhere', '2.0.0', streamed));
    // what another instance does: the revocation committed to the shared store, then its event
    const record = (await ts.server.store.getDevice('dev-elsewhere'))!;
    assert.ok(await ts.server.store.updateDevice({ ...record, revoked: true, updatedAt: Date.now(), version: record.version + 1 }));
    ts.server.events.emit('device.credentials', { deviceId: 'dev-elsewhere' });
    await cutCounted(cut, 1);
    const end = await d.finish();
    assert.ok(end.received < streamed.length, `truncated: ${end.received} of ${streamed.length} bytes`);
  });
});
