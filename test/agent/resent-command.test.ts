/**
 * A command re-sent for the job in flight (every delta repeats it; a `get` brings it with a
 * fresh URL) against the real broker and HTTP artifact server, with a signing key: the agent
 * takes its fresh URL (and the manifest signed with it), and only when it names the build it
 * verified. One that names another build under the same job id (QA: unsigned, `bootloader`
 * 0.0.1, or the signed build's hash labelled 0.0.1) is ignored with a warning: the installer
 * gets the command that was verified, and the outcome names its version.
 */
import assert from 'node:assert/strict';
import { generateKeyPairSync, sign } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { describe, it } from 'node:test';
import type { UpdateAgentOptions } from '../../src/agent/agent-options.ts';
import type { InstallContext, InstalledSoftware, Installer, RecoveryResult } from '../../src/agent/installer.ts';
import { SlotInstaller } from '../../src/agent/slot-installer.ts';
import { manifestBytes, type SoftwareManifest } from '../../src/protocol/manifest.ts';
import type { DesiredSoftware, SoftwareCommand } from '../../src/protocol/software.ts';
import { keyIdOf } from '../../src/signing/signing-key.ts';
import { sha256 } from './support/artifact-server.ts';
import { nextEvent } from './support/agent-fixture.ts';
import { fixturePerTest } from './support/fixture-per-test.ts';

/** Wraps the real slot installer and records the command each install was given. */
class RecordingInstaller implements Installer {
  readonly installed: DesiredSoftware[] = [];
  constructor(readonly inner: SlotInstaller) {}
  current(): Promise<InstalledSoftware | undefined> {
    return this.inner.current();
  }
  install(file: string, sw: DesiredSoftware, ctx: InstallContext): Promise<void> {
    this.installed.push(structuredClone(sw));
    return this.inner.install(file, sw, ctx);
  }
  recover(sw: DesiredSoftware, ctx: InstallContext): Promise<RecoveryResult> {
    return this.inner.recover(sw, ctx);
  }
}

describe('UpdateAgent: a command re-sent for the job in flight', () => {
  const ctx = fixturePerTest({ level: 'info', format: 'json' });
  const { privateKey, publicKey } = generateKeyPairSync('ed25519');
  const publicKeyPem = publicKey.export({ type: 'spki', format: 'pem' }).toString();
  let issued = 0;

  /** The server's way: every command carries a fresh URL and a manifest signed with its expiry. */
  const signedCommands = () => {
    ctx.f.server.issueUrl = (sw) => {
      const urlExpiresAt = Math.floor(Date.now() / 1000) + 3600;
      const manifest: SoftwareManifest = { name: sw.name, version: sw.version, sha256: sw.sha256, size: sw.size, jobId: sw.jobId, expiresAt: urlExpiresAt, keyId: keyIdOf(publicKey) };
      const signature = sign(null, manifestBytes(manifest), privateKey).toString('base64');
      return { url: ctx.f.http.url(undefined, { sig: `s${++issued}` }), urlExpiresAt, manifest, signature } as { url: string; urlExpiresAt: number };
    };
  };
  const warnings = () => ctx.lines.map((l) => JSON.parse(l) as Record<string, unknown>).filter((l) => l.msg === 'ignoring a re-sent command for the job in flight: it names another build');

  /** Starts a signed job downloading slowly, sends `tamper(command)` under its job id mid-download; the outcome and what was installed. */
  async function swapped(tamper: (c: SoftwareCommand) => Record<string, unknown>, extra: Partial<UpdateAgentOptions> = {}) {
    signedCommands();
    const installer = new RecordingInstaller(new SlotInstaller({ dir: ctx.f.installDir }));
    // about 2 s for the 256 KiB build: the re-sent command comes while it downloads
    const agent = await ctx.started(installer, { allowUnsigned: false, signingPublicKey: publicKeyPem, downloadSettings: { retryDelayMs: 5, maxBytesPerSecond: 128 * 1024 }, ...extra });
    const finished = nextEvent(agent, 'job-finished');
    const downloading = nextEvent(agent, 'progress');
    // the last word on the job is the tampered command: no delta answers the agent's own reports after it
    ctx.f.server.noDeltaOnUpdate = true;
    await ctx.f.server.setDesired(ctx.f.software('J1'));
    await downloading;
    const good = ctx.f.server.command();
    await ctx.f.server.publishRaw({ state: { software: tamper(good) }, metadata: {}, version: ++ctx.f.server.version, timestamp: Math.floor(Date.now() / 1000) });
    return { outcome: await finished, installer };
  }

  it('ignores an unsigned command naming another build under the same job id: the verified one is installed', async () => {
    const { outcome, installer } = await swapped((good) => {
      const { manifest: _m, signature: _s, ...rest } = good;
      return { ...rest, name: 'bootloader', version: '0.0.1', sha256: sha256(Buffer.from('x')) };
    });
    assert.equal(outcome.status, 'SUCCESS', outcome.error);
    assert.equal(outcome.version, '2.0.0');
    assert.deepEqual(
      installer.installed.map((c) => ({ name: c.name, version: c.version, sha256: c.sha256, signed: 'manifest' in c })),
      [{ name: 'fw', version: '2.0.0', sha256: sha256(ctx.f.content), signed: true }],
    );
    assert.equal(ctx.f.server.reportsFor('J1').at(-1)!.version, '2.0.0');
    assert.equal(warnings().length, 1);
  });

  it('ignores one that keeps the build and changes only its version (a downgrade label)', async () => {
    const { outcome, installer } = await swapped((good) => {
      const { manifest: _m, signature: _s, ...rest } = good;
      return { ...rest, version: '0.0.1' };
    });
    assert.equal(outcome.status, 'SUCCESS', outcome.error);
    assert.deepEqual(installer.installed.map((c) => c.version), ['2.0.0']);
    assert.equal((await installer.current())?.version, '2.0.0');
    assert.ok(ctx.f.server.reportsFor('J1').every((r) => r.version !== '0.0.1'));
  });

  it('keeps the verified command in the state file while the install waits, not a re-send taken during the download', async () => {
    // a re-send of the same build, unsigned and with a URL of its own: taken for its URL during the download, but never saved as the job's command
    let saved: Record<string, unknown> | undefined;
    const installGate = async () => {
      if (saved) return { go: true } as const;
      const state = JSON.parse(await readFile(path.join(ctx.f.stateDir, 'agent-state.json'), 'utf8')) as { inFlight: { phase: string; command: SoftwareCommand } };
      const { phase, command } = state.inFlight;
      saved = { phase, signed: 'manifest' in command && 'signature' in command, sig: new URL(command.url).searchParams.get('sig') };
      return { later: 'battery low' } as const;
    };
    const { outcome, installer } = await swapped((good) => {
      const { manifest: _m, signature: _s, ...rest } = good;
      return { ...rest, url: ctx.f.http.url(undefined, { sig: 'FORGED' }) };
    }, { installGate, installGateRetryMs: 100 });
    assert.equal(outcome.status, 'SUCCESS', outcome.error);
    // the command whose URL downloaded the build, signed
    const used = ctx.f.http.requests.map((r) => r.query.get('sig'));
    assert.equal(used.length, 1);
    assert.deepEqual(saved, { phase: 'VERIFYING', signed: true, sig: used[0] });
    assert.deepEqual(installer.installed.map((c) => ({ version: c.version, signed: 'manifest' in c })), [{ version: '2.0.0', signed: true }]);
    assert.equal(warnings().length, 0);
  });

  it('takes the fresh URL and manifest of a re-sent command for the same build', async () => {
    signedCommands();
    ctx.f.http.refuseNext = 1;
    const installer = new RecordingInstaller(new SlotInstaller({ dir: ctx.f.installDir }));
    const agent = await ctx.started(installer, { allowUnsigned: false, signingPublicKey: publicKeyPem });
    const finished = nextEvent(agent, 'job-finished');
    await ctx.f.server.setDesired(ctx.f.software('J2'));
    const outcome = await finished;
    assert.equal(outcome.status, 'SUCCESS', outcome.error);
    const [refused, fresh] = ctx.f.http.requests;
    assert.deepEqual(ctx.f.http.requests.map((r) => r.status), [403, 200]);
    assert.notEqual(refused!.query.get('sig'), fresh!.query.get('sig'), 'the fresh URL was used');
    assert.deepEqual(installer.installed.map((c) => c.version), ['2.0.0']);
    assert.equal(warnings().length, 0);
  });

  it('checks a command naming the build that already runs before reporting its job SUCCESS', async () => {
    signedCommands();
    const installer = new RecordingInstaller(new SlotInstaller({ dir: ctx.f.installDir }));
    const agent = await ctx.started(installer, { allowUnsigned: false, signingPublicKey: publicKeyPem });
    const first = nextEvent(agent, 'job-finished');
    await ctx.f.server.setDesired(ctx.f.software('J3'));
    assert.equal((await first).status, 'SUCCESS');
    assert.equal((await installer.current())?.version, '2.0.0');
    // an unsigned command naming the running build, under a job id of its own
    const second = nextEvent(agent, 'job-finished');
    const { manifest: _m, signature: _s, ...unsigned } = { ...ctx.f.server.command(), jobId: 'J4' } as SoftwareCommand & { manifest?: unknown; signature?: unknown };
    await ctx.f.server.publishRaw({ state: { software: unsigned }, metadata: {}, version: ++ctx.f.server.version, timestamp: Math.floor(Date.now() / 1000) });
    const outcome = await second;
    assert.equal(outcome.jobId, 'J4');
    assert.equal(outcome.status, 'FAILURE');
    assert.match(outcome.error ?? '', /sign/i);
    assert.deepEqual(installer.installed.map((c) => c.version), ['2.0.0'], 'nothing installed again');
  });
});
