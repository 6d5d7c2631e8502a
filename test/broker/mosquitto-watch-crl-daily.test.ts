/**
 * `mosquitto-config --watch`'s daily rewrite of crl.pem (a fetch with fresh = true, asking for the
 * list whatever is held) comes though full reads keep fetching the CRL: until the review of
 * 4cede31 it counted from the last answer of any fetch, and every full read (each resyncMs, 10
 * minutes by default) owes one, so it never came. The watch runs in this process on a real
 * server, its clock moved on 11 minutes before each pass, for 26 hours. And a restarted watch
 * whose crl.pem is current at its start (nothing to write) rewrites it daily too (review of
 * 6ea8f0b: the daily count started at the first write, and none came).
 */
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { describe, it } from 'node:test';
import { ApiClient } from '../../src/cli/api-client.ts';
import { coveringBundle, crlFromServer } from '../../src/cli/mosquitto-crl.ts';
import { watchMosquittoPasswd } from '../../src/cli/mosquitto-watch.ts';
import { silentLogger } from '../../src/util/logger.ts';
import { eventually } from '../helpers/cli.ts';
import { startTestServer } from '../helpers/server.ts';

/** Runs the watch for 26 hours of its clock, a full read every 10 minutes, crl.pem written beforehand as the server's current list when `restarted`: asserts a fresh fetch came. */
async function dailyFetchWithin26Hours(restarted: boolean): Promise<void> {
    const ts = await startTestServer();
    const api = new ApiClient({ server: ts.httpUrl, token: ts.token, retryForMs: 0 });
    const dir = await mkdtemp(path.join(os.tmpdir(), 'updraft-crl-daily-'));
    const ctl = new AbortController();
    let offset = 0;
    const fetches: boolean[] = [];
    const cas = ts.server.security.ca.certificate;
    if (restarted) {
      // a restarted watch: crl.pem on disk is the server's list as it is now (nothing changed while it was down)
      const current = coveringBundle(await crlFromServer(api, false), cas);
      assert.ok(current.ok, `the server makes a list: ${JSON.stringify(current)}`);
      await writeFile(path.join(dir, 'crl.pem'), current.pem);
    }
    const running = watchMosquittoPasswd({
      api,
      passwdFile: path.join(dir, 'passwd'),
      secrets: new Map(),
      resyncMs: 600_000,
      logger: silentLogger,
      signal: ctl.signal,
      now: () => Date.now() + offset,
      reloadCommand: 'true',
      crl: { file: path.join(dir, 'crl.pem'), fetch: async (fresh) => (fetches.push(fresh), coveringBundle(await crlFromServer(api, false), cas)), caPem: async () => cas },
    });
    try {
      await eventually(async () => ((await readFile(path.join(dir, 'crl.pem'), 'utf8').catch(() => '')).includes('BEGIN X509 CRL') && (await readFile(path.join(dir, 'passwd'), 'utf8').catch(() => undefined)) !== undefined && fetches.length > 0 ? true : undefined), 30_000, 'crl.pem and passwd written, the CRL fetched');
      for (let i = 0; i < 26 * 6; i++) {
        offset += 11 * 60_000;
        const asked = fetches.length;
        await api.call('POST', '/api/v1/devices', { deviceId: `day-${i}` }); // a pass now: a full read (resyncMs passed), and its CRL fetch
        await eventually(async () => ((await readFile(path.join(dir, 'passwd'), 'utf8')).includes(`\nday-${i}:`) && fetches.length > asked ? true : undefined), 30_000, `pass ${i} done with its fetch`);
      }
      assert.ok(fetches.some((fresh) => fresh), `a daily (fresh) fetch within 26 hours: ${fetches.length} fetches, none fresh`);
    } finally {
      ctl.abort();
      await running;
      await rm(dir, { recursive: true, force: true });
      await ts.close();
    }
}

describe('--watch: the daily CRL rewrite and the full reads', () => {
  it('a fetch with fresh = true is made within 26 hours of full reads every 10 minutes', () => dailyFetchWithin26Hours(false));
  it('and by a restarted watch whose crl.pem was current at its start', () => dailyFetchWithin26Hours(true));
});
