/**
 * What a Mosquitto reload does with crl.pem, and what the watch writes there because of it,
 * on a real Mosquitto (2.0.11) with certificate logins and a real server.
 *
 * Mosquitto enforces exactly the crl.pem it reads at a reload: a CRL it held before is
 * forgotten, so a list older than the one it held re-admits the devices deleted between the
 * two (QA of 2026-12-07, t6: until then docs/security.md said a reload keeps every list
 * loaded and OpenSSL takes the latest). So `mosquitto-config --watch` never writes a CA's
 * list over a newer one of that CA (cli/crl-order.ts): a list fetched from an instance whose
 * lists are behind, or a second watch writing the same directory (t7: CRL number ...708
 * replaced by ...707), is not written, with one WARN; a list on disk issued by a clock far
 * ahead does not hold the file for good. And a deletion reloads Mosquitto once, not twice
 * (t1: the CRL owed by the deletion was fetched in the next pass, with its own reload).
 * Skipped where Mosquitto is not installed (fails under CI=true).
 */
import assert from 'node:assert/strict';
import { createPrivateKey } from 'node:crypto';
import { chmod, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { after, describe, it } from 'node:test';
import { ApiClient } from '../../src/cli/api-client.ts';
import { coveringBundle, crlFromServer, type CrlOutcome } from '../../src/cli/mosquitto-crl.ts';
import { watchMosquittoPasswd } from '../../src/cli/mosquitto-watch.ts';
import { buildCrl, issuedRecord } from '../../src/pki/revocation-list.ts';
import { createLogger } from '../../src/util/logger.ts';
import { eventually, runCli } from '../helpers/cli.ts';
import { findMosquitto, mosquittoUnavailable, runMosquitto, setupMosquittoTls } from '../helpers/mosquitto.ts';
import { tryConnect } from '../helpers/mqtt-client.ts';
import { Scratch } from '../helpers/scratch.ts';
import { apiJson, registerDevice, startTestServer, type TestServer } from '../helpers/server.ts';

type Pair = { certificate: string; privateKey: string };

const found = findMosquitto();
const HOUR = 3_600_000;

if (!found.ok) {
  const message = mosquittoUnavailable(found.reason, 'Mosquitto crlfile reloads');
  it('Mosquitto crlfile reloads', (t) => t.skip(message));
} else {
  const bin = found.bin;
  describe('crl.pem at a Mosquitto reload', () => {
    const scratch = new Scratch();
    after(() => scratch.release());

    /** A data directory, a server on it with `ids` enrolled (certificates issued), and Mosquitto on a crl.pem the server made. */
    async function setup(prefix: string, ids: string[]) {
      const s = await setupMosquittoTls(scratch.tmp, prefix);
      const ts: TestServer = await startTestServer({ dataDir: s.dataDir, flags: { 'mqtt-tls-port': -1 } });
      scratch.onRelease(() => ts.stop());
      const api = new ApiClient({ server: ts.httpUrl, token: ts.token });
      const pairs = new Map<string, Pair>();
      for (const id of ids) {
        await registerDevice(ts, id);
        const r = await apiJson(ts, 'POST', `/api/v1/devices/${id}/certificate`);
        assert.equal(r.status, 201, `certificate of ${id}: ${JSON.stringify(r.body)}`);
        pairs.set(id, { certificate: r.body.certificate, privateKey: r.body.privateKey });
      }
      // a one-off run through the server: mosquitto.conf naming crl.pem, and the server's crl.pem
      const gen = await runCli(['broker', 'mosquitto-config', ...s.flags, '--updraft-ca', '--data-dir', s.dataDir, '--server', ts.httpUrl, '--token', ts.token]);
      assert.equal(gen.code, 0, gen.stderr);
      await chmod(s.out, 0o755);
      await chmod(path.join(s.out, 'passwd'), 0o644);
      const proc = await runMosquitto(bin, s.out, [s.devicePort, s.servicePort]);
      scratch.onRelease(() => proc.stop());
      const caPem = await readFile(path.join(s.dataDir, 'pki', 'ca.crt'), 'utf8');
      const caKey = createPrivateKey(await readFile(path.join(s.dataDir, 'pki', 'ca.key')));
      const crlPath = path.join(s.out, 'crl.pem');
      return {
        ...s,
        ts,
        api,
        proc,
        crlPath,
        /** undefined: connected; 'tls': refused at the handshake. */
        connects: (id: string) => tryConnect(s.url, { clientId: id, ca: s.serverCa, cert: pairs.get(id)!.certificate, key: pairs.get(id)!.privateKey }),
        /** A CRL of the CA (PEM) listing `ids`' certificates, issued at `issuedAt`: what another writer of crl.pem, or a server's clock, made. */
        crlOf: (ids: string[], issuedAt: number) => buildCrl({ caCertificate: caPem, caKey, entries: ids.map((id) => ({ serial: issuedRecord(id, pairs.get(id)!.certificate, caPem).serial, revokedAt: issuedAt })), issuedAt }),
        remove: async (id: string) => {
          const r = await apiJson(ts, 'DELETE', `/api/v1/devices/${id}`);
          assert.ok(r.status === 200 || r.status === 204, `delete ${id}: ${r.status}`);
        },
        hup: async () => {
          await chmod(crlPath, 0o644);
          proc.child.kill('SIGHUP');
          await new Promise((r) => setTimeout(r, 500)); // nothing in its log to wait for
        },
        caPem,
      };
    }

    /** The watch, in this process, on the setup's directory: `fetch` gives the CRL (the server's, or what the test says an instance behind gives), each reload is a SIGHUP, counted. */
    function watch(s: Awaited<ReturnType<typeof setup>>, fetch: () => Promise<CrlOutcome>) {
      const lines: string[] = [];
      const ctl = new AbortController();
      const running = watchMosquittoPasswd({
        api: s.api,
        passwdFile: path.join(s.out, 'passwd'),
        secrets: new Map(),
        resyncMs: 3_600_000,
        logger: createLogger({ level: 'info', write: (l) => lines.push(l) }),
        signal: ctl.signal,
        reloadCommand: `chmod 644 passwd crl.pem && kill -HUP ${s.proc.child.pid} && echo x >> reloads`,
        crl: { file: s.crlPath, fetch, caPem: async () => s.caPem },
      });
      scratch.onRelease(async () => {
        ctl.abort();
        await running;
      });
      const reloads = () => readFile(path.join(s.out, 'reloads'), 'utf8').then((t) => t.split('\n').filter(Boolean).length, () => 0);
      return { lines, reloads };
    }
    const serverCrl = (s: Awaited<ReturnType<typeof setup>>) => async () => coveringBundle(await crlFromServer(s.api, false), s.caPem);

    it('Mosquitto 2.0.11 enforces the crl.pem of the reload only: an older list without a deleted device re-admits it (a reload keeps no earlier list)', async () => {
      const s = await setup('updraft-mq-reload-', ['r-gone', 'r-kept']);
      await writeFile(s.crlPath, s.crlOf(['r-gone'], Date.now()));
      await s.hup();
      assert.equal(await s.connects('r-gone'), 'tls', 'listed in the list Mosquitto holds: refused');
      assert.equal(await s.connects('r-kept'), undefined, 'not listed: connects');
      // an empty list issued an hour before the one held, then a SIGHUP
      await writeFile(s.crlPath, s.crlOf([], Date.now() - HOUR));
      await s.hup();
      assert.equal(await s.connects('r-gone'), undefined, 'the older list, without it, is what Mosquitto enforces after the reload (docs said the newer one held stays in effect)');
    });

    it('--watch never writes a list older than the one crl.pem holds (an instance whose lists are behind): one WARN, the newer kept, the deleted device still refused after the reload', async () => {
      const s = await setup('updraft-mq-older-', ['o-a', 'o-x', 'o-y']);
      await s.remove('o-x');
      const behind = await crlFromServer(s.api, false); // lists o-x only: what an instance behind still gives
      assert.ok(behind.ok && behind.revoked === 1, `the list after the first deletion: ${JSON.stringify(behind.ok && behind.revoked)}`);
      await s.remove('o-y');
      // a newer list on disk (what the one-off run, or another watch, wrote from an instance up to date)
      const newer = await crlFromServer(s.api, false);
      assert.ok(newer.ok && newer.revoked === 2, 'the list after the second deletion lists both');
      await writeFile(s.crlPath, newer.pem);
      await s.hup();
      assert.equal(await s.connects('o-y'), 'tls', 'o-y refused on the newer list');
      const w = watch(s, async () => behind);
      await eventually(async () => ((await w.reloads()) >= 1 ? true : undefined), 30_000, `the watch's first pass reloaded Mosquitto: ${w.lines.join('')}`);
      assert.equal(await readFile(s.crlPath, 'utf8'), newer.pem, 'crl.pem still holds the newer list');
      assert.equal(w.lines.filter((l) => /WARN.*the CRL fetched is older than the one crl\.pem holds/.test(l)).length, 1, `one WARN: ${w.lines.join('')}`);
      assert.equal(await s.connects('o-y'), 'tls', 'o-y, deleted after the older list was issued, still refused after the reload');
      assert.equal(await s.connects('o-x'), 'tls', 'o-x refused');
      assert.equal(await s.connects('o-a'), undefined, 'the device not deleted connects');
    });

    it('--watch replaces a list from a clock ahead: one in force by a newer-by-the-clock list that lists all it does, one OpenSSL does not accept yet (over 24 hours ahead) by any list (not held for days)', async () => {
      const s = await setup('updraft-mq-ahead-', ['a-a', 'a-x', 'a-y']);
      await s.remove('a-x');
      await s.remove('a-y');
      const current = await crlFromServer(s.api, false); // issued now, lists a-x and a-y
      assert.ok(current.ok && current.revoked === 2, 'the server lists both');
      // two hours ahead, listing a-x only: the server's list is older, but lists all it does
      await writeFile(s.crlPath, s.crlOf(['a-x'], Date.now() + 2 * HOUR));
      let fetches = 0;
      const w = watch(s, async () => (fetches++, current));
      await eventually(async () => ((await readFile(s.crlPath, 'utf8')) === current.pem ? true : undefined), 30_000, `the superset written over the list from 2 hours ahead: ${w.lines.join('')}`);
      assert.equal(await s.connects('a-y'), 'tls', 'a-y refused');
      // three days ahead (a clock that far ahead), listing a-a, which the server does not: the
      // server issues after no such list (MAX_AHEAD_MS), and OpenSSL refuses it (not yet valid): it must not hold the file
      await writeFile(s.crlPath, s.crlOf(['a-a'], Date.now() + 72 * HOUR));
      await registerDevice(s.ts, 'a-new');
      await s.remove('a-new'); // a deletion: a fetch
      await eventually(async () => ((await readFile(s.crlPath, 'utf8')) === current.pem ? true : undefined), 30_000, `the list from 3 days ahead replaced: ${w.lines.join('')}`);
      assert.equal(await s.connects('a-a'), undefined, 'a-a, listed only by the list from a clock ahead, connects');
      assert.ok(fetches >= 2, 'fetched again');
    });

    it('--watch reloads Mosquitto once for a deletion: the CRL it owes is fetched in the same pass as passwd', async () => {
      const s = await setup('updraft-mq-once-', ['n-a', 'n-x']);
      const w = watch(s, serverCrl(s));
      await eventually(async () => ((await w.reloads()) >= 1 ? true : undefined), 30_000, `the first pass reloaded: ${w.lines.join('')}`);
      const from = w.lines.length;
      const before = await w.reloads();
      await s.remove('n-x');
      // the pass that writes the CRL ends with a reload: everything of the deletion is done then
      await eventually(async () => (/crlfile written[^]*broker reloaded/.test(w.lines.slice(from).join('')) ? true : undefined), 30_000, `crl.pem written and Mosquitto reloaded: ${w.lines.slice(from).join('')}`);
      const said = w.lines.slice(from).join('');
      assert.match(said, /password file written/, said);
      assert.equal(await w.reloads() - before, 1, `one reload for the deletion (passwd and crl.pem together): ${said}`);
      assert.equal(await s.connects('n-x'), 'tls', 'n-x refused after the one reload');
      assert.equal(await s.connects('n-a'), undefined, 'n-a connects');
    });
  });
}
