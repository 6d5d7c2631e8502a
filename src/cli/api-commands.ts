/** CLI commands that talk to the operator API: artifact, deploy, device, job. */
import { createReadStream } from 'node:fs';
import { stat } from 'node:fs/promises';
import type { Command } from 'commander';
import { parseArtifactRef, type ArtifactPrune } from '../artifacts/artifact-service.ts';
import { UpdraftError } from '../errors.ts';
import type { ShadowDocument } from '../protocol/shadow-messages.ts';
import type { ArtifactRecord, ExecutionRecord, JobRecord } from '../store/state-store.ts';
import { waitOf } from '../jobs/deadlines.ts';
import { prepareSecretDir, saveDeviceSecret, secretFilePath } from '../agent/provisioning.ts';
import { saveSigningKey } from './keys-command.ts';
import { ApiClient, creationKey, type ApiOptions } from './api-client.ts';
import { describeJob } from './job-watch.ts';
import type { JobView } from '../jobs/job-service.ts';
import { dataDirOption } from './data-dir-option.ts';
import { pathSegment } from './path-segment.ts';

/** Options of every API command. */
export interface Common extends ApiOptions {
  json?: boolean;
}

/** Adds the options every API command takes. */
export function withApi(cmd: Command): Command {
  return cmd
    .option('--server <url>', 'Updraft server URL [env UPDRAFT_SERVER, default http://127.0.0.1:8080]')
    .option('--token <token>', 'operator token [env UPDRAFT_TOKEN, default: read from <data-dir>/operator-token]')
    .addOption(dataDirOption('the server data directory holding the operator token'))
    .option('--json', 'print JSON');
}

/** Prints JSON with --json, else the text. */
export function print(opts: Common, json: unknown, text: string): void {
  process.stdout.write(opts.json ? JSON.stringify(json, null, 2) + '\n' : text + '\n');
}

/** `  for rpi4, rpi5  over >=2.5.0` (after `sep`), or '' for a build without constraints. */
function compatibilityText(a: ArtifactRecord, sep: string): string {
  const c = a.compatibility;
  return `${c?.deviceTypes ? `${sep}for    ${c.deviceTypes.join(', ')}` : ''}${c?.requires ? `${sep}over   ${c.requires}` : ''}`;
}

/** Checks, before the server issues a secret, that `--save` can take it (nothing is asked of the server otherwise). */
async function checkSaveDir(installDir: string, command: string): Promise<void> {
  await prepareSecretDir(installDir).catch((err: NodeJS.ErrnoException) => {
    throw new UpdraftError('BAD_REQUEST', `cannot save the secret into ${installDir}: ${err.message}; nothing was ${command}`);
  });
}

/**
 * Saves a secret the server has just issued; when that fails all the same (a full disk), the
 * secret is printed, since the server keeps only its hash and no one could get it again.
 */
async function saveIssuedSecret(installDir: string, secret: string, what: string): Promise<string> {
  try {
    return await saveDeviceSecret(installDir, secret);
  } catch (err) {
    process.stdout.write(`${what}: ${secret}\n`);
    throw new UpdraftError('INTERNAL', `${what} could not be saved into ${installDir} (${(err as Error).message}): it is printed above, shown once; put it in ${secretFilePath(installDir)} (mode 0600) by hand`);
  }
}

/** What became of the connections a revocation or a new secret withdrew access from. */
function cutOffLine(disconnected: number | null, opener: string): string {
  if (disconnected === null) {
    return `  the external broker closes connections ${opener} opened once its password file is regenerated and reloaded: within seconds under updraft broker mosquitto-config --watch, else run updraft broker mosquitto-config, then kill -HUP mosquitto (with certificate logins, --updraft-ca, Mosquitto keeps a connection open until the device reconnects: the acl denies a revoked device every topic, crl.pem refuses a deleted one's certificate at its next handshake; docs/security.md)`;
  }
  return disconnected === 0 ? `  no connection ${opener} opened was open` : `  closed the connection ${opener} had opened`;
}

function executionLine(x: ExecutionRecord): string {
  const d = x.details as { agentStatus?: string; error?: string; progress?: number; version?: string };
  const extra = [d.agentStatus, d.version ? `runs ${d.version}` : undefined, d.error ? `error: ${d.error}` : undefined, waitNote(x), lateNote(x), succeededNote(x)].filter(Boolean).join(', ');
  return `  ${x.jobId}  ${x.status.padEnd(11)}  ${new Date(x.updatedAt).toISOString()}  ${extra}`;
}

/** "then reported SUCCESS at 2026-...: runs 1.2.0" for a device that finished the job after it timed out or was canceled. */
export function lateNote(x: ExecutionRecord): string | undefined {
  const late = x.details.lateSuccess as { version?: unknown; at?: unknown } | undefined;
  if (!late) return undefined;
  return `then reported SUCCESS${typeof late.at === 'number' ? ` at ${new Date(late.at).toISOString()}` : ''}: runs ${String(late.version)}`;
}

/**
 * What a SUCCEEDED execution that ended in place of its retry adds (retry-policy.ts): "timed out
 * at 2026-...Z (in-progress timeout: ...), then its SUCCESS came in: no retry" for the success
 * of a timed-out attempt that came in before its retry was queued (details.timedOut), "retry
 * not sent at 2026-...Z: the device had reported attempt 1's SUCCESS" for a retry dropped at its
 * turn (details.retryNotSent). Without it such an execution read as a plain success.
 */
export function succeededNote(x: ExecutionRecord): string | undefined {
  if (x.status !== 'SUCCEEDED') return undefined;
  const timedOut = x.details.timedOut as { at?: unknown; error?: unknown } | undefined;
  if (timedOut) {
    const why = typeof timedOut.error === 'string' ? ` (${timedOut.error})` : '';
    return `timed out${typeof timedOut.at === 'number' ? ` at ${new Date(timedOut.at).toISOString()}` : ''}${why}, then its SUCCESS came in: no retry`;
  }
  const unsent = x.details.retryNotSent as { attempt?: unknown; at?: unknown } | undefined;
  if (unsent) {
    return `retry not sent${typeof unsent.at === 'number' ? ` at ${new Date(unsent.at).toISOString()}` : ''}: the device had reported attempt ${String(unsent.attempt)}'s SUCCESS`;
  }
  return undefined;
}

/** "install put off 3 times: battery at 12%" while a device's install gate holds its update. */
function waitNote(x: ExecutionRecord): string | undefined {
  const w = x.status === 'IN_PROGRESS' ? waitOf(x.details) : undefined;
  return w && `install put off ${w.count === 1 ? 'once' : `${w.count} times`}: ${w.reason}`;
}

function block(label: string, value: unknown): string {
  if (value === undefined) return `${label}: (none)`;
  return `${label}:\n${JSON.stringify(value, null, 2).replace(/^/gm, '  ')}`;
}

/** A page of GET /api/v1/artifacts, with the server's size limit. */
type ArtifactPage = { items: ArtifactRecord[]; next?: string; maxArtifactBytes?: number };

/**
 * GET /api/v1/artifacts asked with `query` (limit, after, name). A server one release older,
 * from before the list was paged (1cf1234), takes none of them: it answers 400 "unknown query
 * parameter "limit" (it takes none)", and its whole list, with maxArtifactBytes, when asked
 * without. So this asks again without, and keeps the name asked for itself; the one page has no
 * next. Any other refusal stands.
 */
async function artifactPage(api: ApiClient, query: Record<string, string>): Promise<ArtifactPage> {
  try {
    return await api.call<ArtifactPage>('GET', `/api/v1/artifacts?${new URLSearchParams(query)}`);
  } catch (err) {
    if (!(err instanceof UpdraftError) || err.status !== 400 || !/^unknown query parameters? .*"limit"/.test(err.message)) throw err;
    const all = await api.call<ArtifactPage>('GET', '/api/v1/artifacts');
    return query.name === undefined ? all : { ...all, items: all.items.filter((a) => a.name === query.name) };
  }
}

/** Adds the API commands. */
export function addApiCommands(program: Command): void {
  const artifact = program.command('artifact').description('manage software artifacts');
  withApi(artifact.command('add <file>').description('store a build: records SHA-256 and size, and what it may be installed on'))
    .requiredOption('--name <name>', 'artifact name, e.g. fw')
    .requiredOption('--version <version>', 'semantic version, e.g. 2.0.0')
    .option('--device-type <type...>', 'the device types it is made for (repeat, or list them): devices of other types, or given none, refuse it before downloading')
    .option('--requires <range>', "the versions it may be installed over, e.g. '>=2.5.0' or '>=2.5.0 <3.0.0': devices running others refuse it")
    .action(async (file: string, opts: Common & { name: string; version: string; deviceType?: string[]; requires?: string }) => {
      const info = await stat(file).catch(() => {
        throw new UpdraftError('BAD_REQUEST', `cannot read ${file}: no such file`);
      });
      if (!info.isFile()) throw new UpdraftError('BAD_REQUEST', `${file} is not a regular file`);
      const api = new ApiClient(opts);
      // refused here, not half-way: the server stops reading an upload at its limit and the
      // connection goes with it, which fetch reports as a broken pipe, not as the server's 413
      // (every page of the list carries the limit: one artifact's page is enough; a server from
      // before paging answers it in its whole list: artifactPage)
      const { maxArtifactBytes } = await artifactPage(api, { limit: '1' });
      if (maxArtifactBytes !== undefined && info.size > maxArtifactBytes) {
        throw new UpdraftError('TOO_LARGE', `${file} is ${info.size} bytes: the server takes builds of at most ${maxArtifactBytes} bytes (its --max-artifact-bytes); nothing was sent`);
      }
      const types = opts.deviceType?.flatMap((t) => t.split(',')).filter((t) => t !== '');
      const q = new URLSearchParams({ name: opts.name, version: opts.version, ...(types ? { deviceTypes: types.join(',') } : {}), ...(opts.requires !== undefined ? { requires: opts.requires } : {}) });
      const rec = await api.call<ArtifactRecord>('POST', `/api/v1/artifacts?${q}`, createReadStream(file));
      print(opts, rec, `added ${rec.name}@${rec.version}\n  sha256 ${rec.sha256}\n  size   ${rec.size} bytes${compatibilityText(rec, '\n  ')}`);
    });
  withApi(artifact.command('list').description('list artifacts, newest first'))
    .option('--name <name>', "only this name's versions")
    .action(async (opts: Common & { name?: string }) => {
      const api = new ApiClient(opts);
      // the server answers a page at a time (GET /api/v1/artifacts): every page, followed by next
      const items: ArtifactRecord[] = [];
      let after: string | undefined;
      do {
        const page = await artifactPage(api, { limit: '1000', ...(opts.name !== undefined ? { name: opts.name } : {}), ...(after !== undefined ? { after } : {}) });
        items.push(...page.items);
        after = page.next;
      } while (after !== undefined);
      const none = opts.name !== undefined ? `no artifact is named ${opts.name}` : 'no artifacts';
      print(opts, items, items.length === 0 ? none : items.map((a) => `${a.name}@${a.version}  ${a.size} bytes  sha256 ${a.sha256}${compatibilityText(a, '  ')}`).join('\n'));
    });
  withApi(artifact.command('delete <name@version>').description('delete a build no unfinished job installs, and its bytes unless another version holds the same ones')).action(async (ref: string, opts: Common) => {
    const { name, version } = parseArtifactRef(ref);
    const r = await new ApiClient(opts).call<{ artifact: ArtifactRecord; bytesDeleted: boolean }>('DELETE', `/api/v1/artifacts/${pathSegment('artifact name', name)}/${pathSegment('artifact version', version)}`);
    print(opts, r, `deleted ${name}@${version}\n  ${r.bytesDeleted ? `its ${r.artifact.size} bytes removed from storage` : 'its bytes stay: another artifact holds the same ones'}`);
  });
  withApi(artifact.command('prune').description('delete old builds: keep the N newest versions of each name (or of --name); builds an unfinished job installs stay'))
    .requiredOption('--keep <n>', 'how many of the newest versions of each name stay (at least 1; keep the one your fleet runs: rollbacks install it)')
    .option('--name <name>', 'only this name')
    .option('--dry-run', 'say what would be deleted; delete nothing')
    .action(async (opts: Common & { keep: string; name?: string; dryRun?: boolean }) => {
      const r = await new ApiClient(opts).call<ArtifactPrune>('POST', '/api/v1/artifacts/prune', { keep: Number(opts.keep), ...(opts.name !== undefined ? { name: opts.name } : {}), ...(opts.dryRun ? { dryRun: true } : {}) });
      const lines = [
        `${r.dryRun ? 'would delete' : 'deleted'}: ${r.deleted.join(', ') || 'nothing'}`,
        `kept: ${r.kept.join(', ') || 'nothing'}`,
        ...r.refused.map((x) => `not deleted: ${x.reason}`),
      ];
      print(opts, r, lines.join('\n'));
    });

  withApi(program.command('deploy').description('set the desired software of devices (creates a job with a unique id)'))
    .requiredOption('--device <id...>', 'target device id (repeatable)')
    .requiredOption('--artifact <name@version>', 'artifact to install, e.g. fw@2.0.0')
    .option('--idempotency-key <key>', 'the Idempotency-Key sent (default: a random one); the server creates one job per key, so a script that runs again with its key makes no second job')
    .action(async (opts: Common & { device: string[]; artifact: string; idempotencyKey?: string }) => {
      // sent again with its key if no answer comes: one job however many tries (api-client.ts)
      const res = await new ApiClient(opts).call<{ job: JobRecord; executions: ExecutionRecord[] }>('POST', '/api/v1/deployments', { devices: opts.device, artifact: opts.artifact }, { idempotencyKey: creationKey(opts.idempotencyKey) });
      print(opts, res, `job ${res.job.jobId}: ${res.job.artifactName}@${res.job.artifactVersion} to ${res.executions.length} device(s)`);
    });

  const device = program.command('device').description('register and inspect devices');
  const collect = (v: string, acc: string[]) => [...acc, v];
  withApi(device.command('register <id>').description('register a device; prints its secret once'))
    .option('--attr <key=value>', 'attribute (repeatable); true/false and numbers written plainly (12, -3, 1.5) are typed, anything else (00123, 1.10, 0x1F) stays text', collect, [])
    .option('--tag <tag>', 'tag (repeatable)', collect, [])
    .option('--save <install-dir>', "write the secret into the agent's install directory (mode 0600) instead of printing it")
    .action(async (id: string, opts: Common & { attr: string[]; tag: string[]; save?: string }) => {
      const attributes = parseAttributes(opts.attr);
      if (opts.save) await checkSaveDir(opts.save, 'registered');
      const r = await new ApiClient(opts).call<{ device: { deviceId: string }; secret: string }>('POST', '/api/v1/devices', { deviceId: id, attributes, tags: opts.tag });
      if (opts.save) {
        const file = await saveIssuedSecret(opts.save, r.secret, `the secret of ${id}, registered,`);
        // provision the agent with the operator's public signing key too: it refuses unsigned software
        const keys = await saveSigningKey(new ApiClient(opts), opts.save);
        print(
          opts,
          { device: r.device, secretFile: file, signingKeyFile: keys.keyFile, ...(keys.rootFile !== undefined ? { rootKeyFile: keys.rootFile } : {}) },
          `registered ${id}; secret saved to ${file}; signing key to ${keys.keyFile}${keys.rootFile !== undefined ? `; root key to ${keys.rootFile}` : ''}`,
        );
      } else {
        print(opts, r, `registered ${id}\n  secret ${r.secret}\n  (shown once: pass it to the agent with --password or UPDRAFT_DEVICE_PASSWORD)`);
      }
    });
  withApi(device.command('update <id>').description('change what a device is selected by: set or remove attributes, replace its tags'))
    .option('--attr <key=value>', 'set an attribute (repeatable); true/false and numbers written plainly (12, -3, 1.5) are typed, anything else (00123, 1.10, 0x1F) stays text', collect, [])
    .option('--unset-attr <key>', 'remove an attribute (repeatable)', collect, [])
    .option('--tag <tag>', 'its tags from now on (repeatable): they replace the ones it has', collect, [])
    .option('--no-tags', 'remove every tag')
    .action(async (id: string, opts: Common & { attr: string[]; unsetAttr: string[]; tag: string[]; tags: boolean }) => {
      const attributes: Record<string, string | number | boolean | null> = parseAttributes(opts.attr);
      for (const k of opts.unsetAttr) attributes[k] = null;
      if (!opts.tags && opts.tag.length > 0) throw new UpdraftError('BAD_REQUEST', 'give either --tag (its tags from now on) or --no-tags, not both');
      const tags = !opts.tags ? [] : opts.tag.length > 0 ? opts.tag : undefined;
      if (Object.keys(attributes).length === 0 && tags === undefined) throw new UpdraftError('BAD_REQUEST', 'nothing to change: give --attr, --unset-attr, --tag or --no-tags');
      const d = await new ApiClient(opts).call<{ deviceId: string; attributes: Record<string, unknown>; tags: string[] }>('PATCH', `/api/v1/devices/${pathSegment('device id', id)}`, {
        ...(Object.keys(attributes).length > 0 ? { attributes } : {}),
        ...(tags !== undefined ? { tags } : {}),
      });
      const attrs = Object.entries(d.attributes).map(([k, v]) => `${k}=${String(v)}`).join(' ');
      print(opts, d, `updated ${d.deviceId}\n  attributes ${attrs || '(none)'}\n  tags       ${d.tags.join(' ') || '(none)'}`);
    });
  withApi(device.command('rotate-secret <id>').description('issue a new secret; the old one stops working, and connections it opened are closed'))
    .option('--save <install-dir>', "write the secret into the agent's install directory")
    .action(async (id: string, opts: Common & { save?: string }) => {
      if (opts.save) await checkSaveDir(opts.save, 'rotated');
      const r = await new ApiClient(opts).call<{ secret: string; disconnected: number | null }>('POST', `/api/v1/devices/${pathSegment('device id', id)}/rotate-secret`);
      const cut = cutOffLine(r.disconnected, 'the old secret');
      if (opts.save) print(opts, { secretFile: await saveIssuedSecret(opts.save, r.secret, `the new secret of ${id}`), disconnected: r.disconnected }, `new secret for ${id} saved\n${cut}`);
      else print(opts, r, `new secret for ${id}: ${r.secret}\n${cut}`);
    });
  withApi(device.command('reinstate <id>').description('lift a revocation (rotate the secret first if it leaked); running rollouts that skipped it for it take it back')).action(async (id: string, opts: Common) => {
    const r = await new ApiClient(opts).call<{ wasRevoked: boolean; jobsRequeued: string[] }>('POST', `/api/v1/devices/${pathSegment('device id', id)}/reinstate`);
    const head = r.wasRevoked ? `reinstated ${id}` : `${id} was not revoked: nothing to lift`;
    print(opts, r, r.jobsRequeued.length === 0 ? head : `${head}\n  queued again in the running job(s) that skipped it while it was revoked: ${r.jobsRequeued.join(', ')}`);
  });
  withApi(device.command('revoke <id>').description('refuse the device from now on, and close the connection it holds')).action(async (id: string, opts: Common) => {
    const r = await new ApiClient(opts).call<{ disconnected: number | null }>('POST', `/api/v1/devices/${pathSegment('device id', id)}/revoke`);
    print(opts, r, `revoked ${id}\n${cutOffLine(r.disconnected, 'it')}`);
  });
  withApi(device.command('delete <id>').description('decommission: revoke and disconnect it, end its unfinished job executions, delete its shadows and group memberships, then its registration')).action(async (id: string, opts: Common) => {
    const r = await new ApiClient(opts).call<{ disconnected: number | null; executionsRemoved: string[]; shadowsDeleted: string[]; groupsLeft: string[] }>('DELETE', `/api/v1/devices/${pathSegment('device id', id)}`);
    const shadows = r.shadowsDeleted.map((n) => (n === '' ? 'classic' : n));
    const lines = [
      `deleted ${id}`,
      cutOffLine(r.disconnected, 'it'),
      r.executionsRemoved.length === 0 ? '  no unfinished job execution' : `  unfinished job executions ended REMOVED: ${r.executionsRemoved.join(', ')}`,
      shadows.length === 0 ? '  no shadow' : `  shadows deleted: ${shadows.join(', ')}`,
      ...(r.groupsLeft.length > 0 ? [`  left static groups: ${r.groupsLeft.join(', ')}`] : []),
    ];
    print(opts, r, lines.join('\n'));
  });
  withApi(device.command('show <id>').description("a device's desired, reported and delta state and its jobs")).action(async (id: string, opts: Common) => {
    const d = await new ApiClient(opts).call<{ deviceId: string; online: boolean; shadow: ShadowDocument | null; executions: ExecutionRecord[]; executionsNext?: string }>('GET', `/api/v1/devices/${pathSegment('device id', id)}`);
    const state = d.shadow?.state ?? {};
    const lines = [
      `device ${d.deviceId}  ${d.online ? 'online' : 'offline'}  ${d.shadow ? `shadow version ${d.shadow.version}` : 'never connected'}`,
      block('desired', state.desired),
      block('reported', state.reported),
      block('delta', state.delta),
      d.executions.length === 0 ? 'jobs: (none)' : `jobs:\n${d.executions.map(executionLine).join('\n')}`,
      // the newest 100 only: a device's history only grows
      ...(d.executionsNext ? [`(older jobs: updraft device history ${id} --after ${d.executionsNext})`] : []),
    ];
    print(opts, d, lines.join('\n'));
  });
  withApi(device.command('list').description('list devices'))
    .option('--limit <n>', 'page size', '100')
    .option('--after <id>', 'cursor: list devices after this id')
    .option('--query <query>', 'only devices the query selects, e.g. "reported.software.version < 2.0.0 and tags.region = eu"')
    .action(async (opts: Common & { limit: string; after?: string; query?: string }) => {
      // --query '' is sent, for the server's 400 (`it is empty`), not dropped to list every device
      const withQuery = opts.query !== undefined;
      const q = new URLSearchParams({ limit: opts.limit, ...(opts.after ? { after: opts.after } : {}), ...(opts.query !== undefined ? { query: opts.query } : {}) });
      type Row = { deviceId: string; online: boolean; reported: { version?: string; status?: string } | null };
      const api = new ApiClient(opts);
      const page = await api.call<{ items: Row[]; next?: string; scanned?: number }>('GET', `${withQuery ? '/api/v1/fleet/devices' : '/api/v1/devices'}?${q}`);
      // a query's answer reads at most 10,000 devices: a page may come short, even empty, with
      // next; ask on from there until the page is full or the fleet read
      while (withQuery && page.next !== undefined && page.items.length < Number(opts.limit)) {
        q.set('after', page.next);
        q.set('limit', String(Number(opts.limit) - page.items.length));
        const more = await api.call<{ items: Row[]; next?: string; scanned?: number }>('GET', `/api/v1/fleet/devices?${q}`);
        page.items.push(...more.items);
        // --json answers for every page read: the devices read in all
        if (page.scanned !== undefined && more.scanned !== undefined) page.scanned += more.scanned;
        if (more.next === undefined) delete page.next;
        else page.next = more.next;
      }
      const text = page.items.map((r) => `${r.deviceId}  ${r.online ? 'online ' : 'offline'}  ${r.reported?.version ?? '-'}  ${r.reported?.status ?? ''}`).join('\n');
      print(opts, page, (text || 'no devices') + (page.next ? `\n(more: --after ${page.next})` : ''));
    });

  const job = program.command('job').description('inspect jobs');
  withApi(job.command('show <jobId>').description('a job, its counts and the outcome on each device (1,000 a page)'))
    .option('--limit <n>', 'devices a page (at most 1000)', '1000')
    .option('--after <deviceId>', 'cursor: the devices after this one (the line "(more: ...)" names it)')
    .action(async (jobId: string, opts: Common & { limit: string; after?: string }) => {
      const q = new URLSearchParams({ limit: opts.limit, ...(opts.after ? { after: opts.after } : {}) });
      const r = await new ApiClient(opts).call<JobView & { executions: ExecutionRecord[]; next?: string }>('GET', `/api/v1/jobs/${pathSegment('job id', jobId)}?${q}`);
      const lines = [
        `job ${r.job.jobId}  ${r.job.artifactName}@${r.job.artifactVersion}  ${r.total} device(s)`,
        `  ${describeJob(r)}`,
        // the attempt as device history says it: a retried device read like one that had none (QA)
        ...r.executions.map((x) => `  ${x.deviceId}  ${x.status}${(x.attempt ?? 1) > 1 ? ` (attempt ${x.attempt})` : ''}  ${[(x.details as { error?: string }).error ?? waitNote(x), lateNote(x), succeededNote(x)].filter(Boolean).join('; ')}`),
        ...(r.next ? [`(more: updraft job show ${jobId} --after ${r.next})`] : []),
      ];
      print(opts, r, lines.join('\n'));
    });
}

/**
 * `--attr key=value` pairs: true/false are booleans, and a number written as JSON writes it
 * (`12`, `-3`, `1.5`) is a number. Anything else stays the string typed: `00123` (a serial),
 * `0x1F`, `1e3` and `1.10` (a version) would each be another value as numbers. A key may
 * appear once; the object has no prototype, so `__proto__` is a key like any other (the
 * server says whether it takes it).
 */
export function parseAttributes(pairs: string[]): Record<string, string | number | boolean> {
  const attributes: Record<string, string | number | boolean> = Object.create(null) as Record<string, string | number | boolean>;
  for (const a of pairs) {
    const eq = a.indexOf('=');
    if (eq <= 0) throw new UpdraftError('BAD_REQUEST', `--attr ${a} must look like key=value`);
    const key = a.slice(0, eq);
    if (Object.hasOwn(attributes, key)) throw new UpdraftError('BAD_REQUEST', `--attr ${key} is given twice`);
    const raw = a.slice(eq + 1);
    attributes[key] = raw === 'true' ? true : raw === 'false' ? false : isPlainNumber(raw) ? Number(raw) : raw;
  }
  return attributes;
}

/** True for a number written the way JSON and JavaScript write it back (`String(Number(s)) === s`). */
function isPlainNumber(s: string): boolean {
  const n = Number(s);
  return s !== '' && Number.isFinite(n) && String(n) === s;
}
