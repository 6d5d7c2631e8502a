/**
 * CLI commands for rollouts, clients of the `/api/v1` routes in `http/job-routes.ts`:
 * `updraft group ...`, `updraft job create|list|pause|resume|cancel|delete|log|watch`,
 * `updraft artifact show`, `updraft device history`, `updraft status`.
 */
import { readJsonFile } from './json-file.ts';
import type { Command } from 'commander';
import { UpdraftError } from '../errors.ts';
import { isJsonObject } from '../protocol/json.ts';
import { parseArtifactRef } from '../artifacts/artifact-service.ts';
import type { ExecutionRecord, JobLogRecord, JobLogSummary, JobRecord, Page } from '../store/state-store.ts';
import { JOB_LOG_HEAD_LINES } from '../protocol/job-log.ts';
import type { GroupView } from '../fleet/group-service.ts';
import { ApiClient, creationKey } from './api-client.ts';
import { print, succeededNote, withApi, type Common } from './api-commands.ts';
import type { JobPreview, JobView } from '../jobs/job-service.ts';
import { describeJob, watchJob } from './job-watch.ts';
import { pathSegment } from './path-segment.ts';

const collect = (v: string, acc: string[]) => [...acc, v];

/** Finds the command `name` (created by another file) or creates it. */
function parent(program: Command, name: string, description: string): Command {
  return program.commands.find((c) => c.name() === name) ?? program.command(name).description(description);
}

/** `5` (count), `50%` (cumulative percentage); `@95` success threshold; a trailing `!` asks for approval. */
export function parseWave(text: string): Record<string, unknown> {
  const m = /^(\d+)(%?)(?:@(\d+(?:\.\d+)?))?(!?)$/.exec(text.trim());
  if (!m) throw new UpdraftError('BAD_REQUEST', `--wave ${text} must look like 5, 50% or 50%@95 (count or cumulative %, @ success threshold %, ! to wait for approval)`);
  const wave: Record<string, unknown> = m[2] ? { percent: Number(m[1]) } : { count: Number(m[1]) };
  if (m[3] !== undefined) wave.successThreshold = Number(m[3]);
  if (m[4]) wave.requireApproval = true;
  return wave;
}

/** `--window 02:00+120` or `22:00+240@sat,sun`: opens at HH:MM for N minutes, on those days (every day without). */
export function parseWindow(text: string): Record<string, unknown> {
  const m = /^(\d{1,2}:\d{2})\+(\d+)(?:@([a-z,]+))?$/i.exec(text.trim());
  if (!m) throw new UpdraftError('BAD_REQUEST', `--window ${text} must look like 02:00+120 or 22:00+240@sat,sun (opens at HH:MM for N minutes, on those days)`);
  const start = m[1]!.padStart(5, '0');
  return { start, minutes: Number(m[2]), ...(m[3] ? { days: m[3].toLowerCase().split(',').filter(Boolean) } : {}) };
}

/** The shortest poll interval of `job watch`, in ms. */
const MIN_WATCH_INTERVAL_MS = 100;
/** The longest: a timer holds at most 2^31-1 ms (about 24.8 days). */
const MAX_WATCH_INTERVAL_MS = 2_147_483_647;

/**
 * A number written in decimal: digits, a fraction and a minus sign (the server refuses what
 * is out of its bounds, saying them). Number() alone read `0x10` as 16, `1e3` as 1000 and
 * ` 2` as 2 (QA), which the server's own flags refuse (docs/configuration.md); and `''` and
 * `' '` as 0: `--retries "$N"` with N unset asked for none.
 */
function number(flag: string, v: string | undefined): number | undefined {
  if (v === undefined) return undefined;
  if (!/^-?\d+(\.\d+)?$/.test(v)) throw new UpdraftError('BAD_REQUEST', `${flag} must be a number written in decimal digits (like 30 or 2.5), got ${JSON.stringify(v)}`);
  return Number(v);
}

/**
 * `v` when given and not empty; refused when empty (`--start-at "$START"` with START unset):
 * a truthiness check dropped it, and a scheduled rollout started at once. `what` says what to
 * give instead.
 */
function given(flag: string, v: string | undefined, what: string): string | undefined {
  if (v !== undefined && v.trim() === '') throw new UpdraftError('BAD_REQUEST', `${flag} is empty: give ${what}, or leave the option out`);
  return v;
}

/** `v`'s `:`-separated parts, at least `min` and at most `max`, none empty; else `${flag} ${v} must look like ${form}`. */
function parts(flag: string, v: string, min: number, max: number, form: string): string[] {
  const p = v.split(':');
  if (p.length < min || p.length > max || p.some((x) => x.trim() === '')) throw new UpdraftError('BAD_REQUEST', `${flag} ${v} must look like ${form}`);
  return p;
}

interface CreateOptions extends Common {
  artifact?: string;
  device: string[];
  group: string[];
  query?: string;
  continuous?: boolean;
  wave: string[];
  maxPerMinute?: string;
  maxInFlight?: string;
  rampUp?: string;
  startAt?: string;
  window: string[];
  timeZone?: string;
  abort: string[];
  rollback?: boolean;
  timeout?: string;
  stepTimeout?: string;
  retries?: string;
  retryOn?: string;
  allowDowngrade?: boolean;
  description?: string;
  file?: string;
  dryRun?: boolean;
  idempotencyKey?: string;
}

/** A preview in a few lines: the targets per wave, when sending starts, and its least duration at the rate. */
export function describePreview(p: JobPreview, now = Date.now()): string {
  const lines = [`dry run: ${p.artifact} to ${p.total} device(s)${p.type === 'continuous' ? ' now (and devices that match later)' : ''}; nothing created`];
  for (const w of p.waves) lines.push(`  wave ${w.wave + 1}: ${w.devices} device(s)${w.first.length ? `: ${w.first.join(', ')}${w.devices > w.first.length ? ', ...' : ''}` : ''}`);
  // a few seconds of slack for the clocks of this machine and the server's; a start within
  // the minute is still a start to name (it said "at once" of one 50 s away)
  lines.push(p.startsAt > now + 5_000 ? `  starts sending ${new Date(p.startsAt).toISOString()}` : '  starts sending at once');
  if (p.minSendMinutes !== undefined) lines.push(`  sending every command takes at least ${p.minSendMinutes} minute(s) at its rate`);
  const k = p.skipped;
  if (k && k.downgrade + k.incompatible > 0) {
    const kinds = [k.incompatible ? `${k.incompatible} not compatible` : '', k.downgrade ? `${k.downgrade} running a higher version` : ''].filter(Boolean).join(', ');
    lines.push(`  skipped (REJECTED, nothing sent), by what they reported: ${kinds}${k.scanned < p.total ? ` among the first ${k.scanned}` : ''}`);
    for (const f of k.first) lines.push(`    ${f.deviceId}: ${f.error}`);
  }
  for (const w of p.warnings ?? []) lines.push(`  warning: ${w}`);
  const a = p.installAtOnce;
  if (a && a.count > 0) {
    lines.push(`  ${a.count} device(s)${k && k.scanned < p.total ? ` among the first ${k.scanned}` : ''} would install at once, outside their windows: their agents do not hold an install for a window (older agents, or never connected): ${a.first.join(', ')}${a.count > a.first.length ? ', ...' : ''}`);
  }
  return lines.join('\n');
}

/** The JSON object of `--file`; a readable error naming the file otherwise. */
async function readJobFile(file: string): Promise<Record<string, unknown>> {
  const value = await readJsonFile(file);
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw new UpdraftError('BAD_REQUEST', `${file} must hold a JSON object: the job, as POST /api/v1/jobs takes it`);
  return value as Record<string, unknown>;
}

/** The create-job body from flags (or from --file, which the flags then extend). */
async function jobBody(o: CreateOptions): Promise<Record<string, unknown>> {
  const body: Record<string, unknown> = o.file ? await readJobFile(o.file) : {};
  // --artifact is required unless the file names the artifact (docs/rollouts.md): not a
  // required option of commander's, which refused a file that gives it
  if (o.artifact !== undefined) body.artifact = o.artifact;
  else if (body.artifact === undefined) {
    throw new UpdraftError('BAD_REQUEST', o.file ? `${o.file} names no "artifact": give it there ("artifact": "fw@2.0.0") or as --artifact <name@version>` : 'no artifact to install: give --artifact <name@version> (e.g. fw@2.0.0), or --file with the job\'s "artifact"');
  }
  const targets: Record<string, unknown> = { ...(body.targets as object | undefined) };
  if (o.device.length) targets.devices = o.device;
  if (o.group.length) targets.groups = o.group;
  // an empty --query is sent, and refused (400 'it is empty'), not dropped: with --device x it targeted x alone without a word
  if (o.query !== undefined) targets.query = o.query;
  body.targets = targets;
  if (o.continuous) body.type = 'continuous';
  const plan: Record<string, unknown> = { ...(body.plan as object | undefined) };
  if (o.wave.length) plan.waves = o.wave.map(parseWave);
  if (o.maxPerMinute !== undefined) plan.maxPerMinute = number('--max-per-minute', o.maxPerMinute);
  if (o.maxInFlight !== undefined) plan.maxInFlight = number('--max-in-flight', o.maxInFlight);
  if (o.rampUp !== undefined) {
    // every part is read: 5:2:9 dropped its :9
    const [initial, factor] = parts('--ramp-up', o.rampUp, 1, 2, 'initial:factor (per minute, e.g. 10:2; factor 2 when left out)');
    plan.rampUp = { initialPerMinute: number('--ramp-up', initial), factor: number('--ramp-up', factor ?? '2') };
  }
  if (given('--start-at', o.startAt, 'an ISO 8601 time') !== undefined) plan.startAt = o.startAt;
  if (o.window.length) plan.windows = o.window.map(parseWindow);
  if (given('--time-zone', o.timeZone, 'an IANA time zone (Europe/Madrid) or device') !== undefined) plan.timeZone = o.timeZone;
  if (Object.keys(plan).length) body.plan = plan;
  // A flag overrides its own field of --file's spec and leaves the file's other fields be:
  // --abort replaces the file's rules but keeps its rollback, --retries its limit but keeps
  // the statuses it retries on (and the reverse). Options that only qualify another are
  // refused alone, not dropped: --rollback needs abort rules, --retry-on a retry limit,
  // from the flags or the file.
  const fileAbort = isJsonObject(body.abort) ? body.abort : undefined;
  const fileRetries = isJsonObject(body.retries) ? body.retries : undefined;
  if (o.rollback && o.abort.length === 0 && fileAbort === undefined) throw new UpdraftError('BAD_REQUEST', '--rollback goes with --abort: it says what an abort does to the devices that failed');
  given('--retry-on', o.retryOn, 'the states to retry (FAILED,TIMED_OUT)');
  if (o.retryOn !== undefined && o.retries === undefined && fileRetries?.limit === undefined) throw new UpdraftError('BAD_REQUEST', '--retry-on goes with --retries: without a number of retries, nothing is retried');
  if (o.abort.length || o.rollback) {
    const abort: Record<string, unknown> = { ...fileAbort };
    if (o.abort.length) {
      abort.rules = o.abort.map((a) => {
        const [type, pct, min] = parts('--abort', a, 2, 3, 'type:percent[:min] (e.g. FAILED:10:20 or ANY:5)');
        return { type: type!.toUpperCase(), thresholdPercent: number('--abort', pct), ...(min ? { minFinished: number('--abort', min) } : {}) };
      });
    }
    if (o.rollback) abort.rollback = true;
    body.abort = abort;
  }
  const timeouts: Record<string, unknown> = { ...(body.timeouts as object | undefined) };
  if (given('--timeout', o.timeout, 'a number of seconds') !== undefined) timeouts.inProgressSeconds = number('--timeout', o.timeout);
  if (given('--step-timeout', o.stepTimeout, 'a number of seconds') !== undefined) timeouts.stepSeconds = number('--step-timeout', o.stepTimeout);
  if (Object.keys(timeouts).length) body.timeouts = timeouts;
  if (o.retries !== undefined || o.retryOn !== undefined) {
    body.retries = {
      ...fileRetries,
      ...(o.retries !== undefined ? { limit: number('--retries', o.retries) } : {}),
      ...(o.retryOn !== undefined ? { on: o.retryOn.split(',').map((s) => s.trim().toUpperCase()) } : {}),
    };
  }
  if (o.allowDowngrade) body.allowDowngrade = true;
  if (given('--description', o.description, 'a text') !== undefined) body.description = o.description;
  return body;
}

/** Adds the rollout commands. */
export function addRolloutCommands(program: Command): void {
  // ---- groups
  const group = parent(program, 'group', 'static and dynamic device groups');
  withApi(group.command('create <name>').description('create a static group (--device ...) or a dynamic one (--query)'))
    .option('--device <id>', 'member (repeatable): a static group', collect, [])
    .option('--query <query>', 'a dynamic group: the devices this query selects, e.g. "tags.region = eu"')
    .option('--description <text>', 'what the group is for')
    .action(async (name: string, o: Common & { device: string[]; query?: string; description?: string }) => {
      if (o.query !== undefined && o.device.length > 0) throw new UpdraftError('BAD_REQUEST', 'give either --device (a static group) or --query (a dynamic group), not both');
      const description = given('--description', o.description, 'a text');
      const body = { name, ...(o.query !== undefined ? { query: o.query } : { devices: o.device }), ...(description !== undefined ? { description } : {}) };
      const g = await new ApiClient(o).call<GroupView>('POST', '/api/v1/groups', body);
      print(o, g, `created ${g.kind} group ${g.name}${g.query ? `: ${g.query}` : ` with ${g.size} device(s)`}`);
    });
  withApi(group.command('list').description('list groups')).action(async (o: Common) => {
    const { items } = await new ApiClient(o).call<{ items: GroupView[] }>('GET', '/api/v1/groups');
    print(o, items, items.length === 0 ? 'no groups' : items.map((g) => `${g.name}  ${g.kind}  ${g.query ?? `${g.size} device(s)`}`).join('\n'));
  });
  withApi(group.command('show <name>').description("a group and its members (a dynamic group's are evaluated now)"))
    .option('--limit <n>', 'page size', '100')
    .option('--after <id>', 'cursor')
    .action(async (name: string, o: Common & { limit: string; after?: string }) => {
      const q = new URLSearchParams({ limit: o.limit, ...(o.after ? { after: o.after } : {}) });
      const api = new ApiClient(o);
      const path = `/api/v1/groups/${pathSegment('group name', name)}`;
      const r = await api.call<{ group: GroupView; members: string[]; next?: string; scanned?: number }>('GET', `${path}?${q}`);
      // a dynamic group's page reads at most 10,000 devices: it may come short, even empty, with
      // next; ask on from there until the page is full or the fleet read
      while (r.next !== undefined && r.members.length < Number(o.limit)) {
        q.set('after', r.next);
        q.set('limit', String(Number(o.limit) - r.members.length));
        const more = await api.call<{ members: string[]; next?: string; scanned?: number }>('GET', `${path}?${q}`);
        r.members.push(...more.members);
        // --json answers for every page read: the devices read in all
        if (r.scanned !== undefined && more.scanned !== undefined) r.scanned += more.scanned;
        if (more.next === undefined) delete r.next;
        else r.next = more.next;
      }
      const head = `group ${r.group.name}  ${r.group.kind}${r.group.query ? `  query: ${r.group.query}` : `  ${r.group.size} device(s)`}`;
      print(o, r, [head, ...r.members.map((m) => `  ${m}`), ...(r.next ? [`(more: --after ${r.next})`] : [])].join('\n'));
    });
  withApi(group.command('add <name> <ids...>').description('add devices to a static group')).action(async (name: string, ids: string[], o: Common) => {
    const g = await new ApiClient(o).call<GroupView>('POST', `/api/v1/groups/${pathSegment('group name', name)}/members`, { add: ids });
    print(o, g, `group ${g.name}: ${g.size} device(s)`);
  });
  withApi(group.command('remove <name> <ids...>').description('remove devices from a static group')).action(async (name: string, ids: string[], o: Common) => {
    const g = await new ApiClient(o).call<GroupView>('POST', `/api/v1/groups/${pathSegment('group name', name)}/members`, { remove: ids });
    print(o, g, `group ${g.name}: ${g.size} device(s)`);
  });
  withApi(group.command('delete <name>').description('delete a group')).action(async (name: string, o: Common) => {
    const r = await new ApiClient(o).call<unknown>('DELETE', `/api/v1/groups/${pathSegment('group name', name)}`);
    print(o, r, `deleted group ${name}`);
  });

  // ---- jobs
  const job = parent(program, 'job', 'rollout jobs');
  withApi(job.command('create').description('create a rollout job (see docs/rollouts.md)'))
    .option('--artifact <name@version>', 'artifact to install, e.g. fw@2.0.0 (required unless --file gives "artifact")')
    .option('--device <id>', 'target device (repeatable)', collect, [])
    .option('--group <name>', 'target group (repeatable)', collect, [])
    .option('--query <query>', 'target query, e.g. "reported.software.version < 2.0.0"')
    .option('--continuous', 'also update devices that match later')
    .option('--wave <spec>', 'a wave (repeatable, in order): 5, 50%, 50%@95 (threshold), 10! (wait for approval)', collect, [])
    .option('--max-per-minute <n>', 'most update commands sent per minute')
    .option('--max-in-flight <n>', 'most devices with a command and no outcome yet')
    .option('--ramp-up <initial:factor>', 'exponential ramp-up per minute, e.g. 10:2')
    .option('--start-at <time>', 'scheduled start (ISO 8601)')
    .option('--window <HH:MM+minutes[@days]>', 'maintenance window (repeatable): commands are sent only then, e.g. 02:00+120 or 22:00+240@sat,sun', collect, [])
    .option('--time-zone <zone>', 'IANA time zone of --window, e.g. Europe/Madrid (default UTC); "device": each device\'s own (commands go out at any time, and each agent installs when a window is open where it is)')
    .option('--abort <type:percent[:min]>', 'abort rule (repeatable), e.g. FAILED:10:20 or ANY:5', collect, [])
    .option('--rollback', 'on abort, set failed devices back to what they ran before')
    .option('--timeout <s>', 'in-progress timeout in seconds')
    .option('--step-timeout <s>', 'per-step timeout in seconds')
    .option('--retries <n>', 'retries of failed and timed-out devices')
    .option('--retry-on <states>', 'FAILED,TIMED_OUT (default both)')
    .option('--allow-downgrade', 'install even where a higher version runs')
    .option('--description <text>', 'what the job is for')
    .option('--file <spec.json>', 'the job body as JSON, "artifact" included (flags override their own fields)')
    .option('--dry-run', 'show what the job would target, wave by wave, and when it would start; create nothing')
    .option('--idempotency-key <key>', 'the Idempotency-Key sent (default: a random one); the server creates one job per key, so a script that runs again with its key makes no second job')
    .action(async (o: CreateOptions) => {
      if (o.dryRun) {
        const preview = await new ApiClient(o).call<JobPreview>('POST', '/api/v1/jobs/preview', await jobBody(o));
        print(o, preview, describePreview(preview));
        return;
      }
      // sent again with its key if no answer comes: one job however many tries (api-client.ts)
      const view = await new ApiClient(o).call<JobView>('POST', '/api/v1/jobs', await jobBody(o), { idempotencyKey: creationKey(o.idempotencyKey) });
      print(o, view, `job ${view.job.jobId}: ${view.job.artifactName}@${view.job.artifactVersion} to ${view.total} device(s), ${view.job.status}`);
    });
  withApi(job.command('list').description('jobs, newest first'))
    .option('--status <states>', 'comma-separated, e.g. IN_PROGRESS,PAUSED')
    .option('--limit <n>', 'page size', '50')
    .option('--after <cursor>', 'cursor')
    .action(async (o: Common & { status?: string; limit: string; after?: string }) => {
      const q = new URLSearchParams({ limit: o.limit, ...(o.after ? { after: o.after } : {}), ...(o.status ? { status: o.status } : {}) });
      const page = await new ApiClient(o).call<{ items: JobRecord[]; next?: string }>('GET', `/api/v1/jobs?${q}`);
      const lines = page.items.map((j) => `${j.jobId}  ${j.status.padEnd(11)}  ${j.artifactName}@${j.artifactVersion}  ${new Date(j.createdAt).toISOString()}  ${j.description ?? ''}`);
      print(o, page, (lines.join('\n') || 'no jobs') + (page.next ? `\n(more: --after ${page.next})` : ''));
    });
  for (const action of ['pause', 'resume', 'cancel'] as const) {
    const what = { pause: 'stop sending (devices updating go on)', resume: 'go on (approves the next wave after a threshold or approval pause)', cancel: 'cancel: queued devices are skipped, devices not yet installing are told to stop' }[action];
    withApi(job.command(`${action} <jobId>`).description(what)).action(async (jobId: string, o: Common) => {
      const view = await new ApiClient(o).call<JobView>('POST', `/api/v1/jobs/${pathSegment('job id', jobId)}/${action}`);
      print(o, view, describeJob(view));
    });
  }
  withApi(job.command('delete <jobId>').description('delete a finished job (COMPLETED, CANCELED, ABORTED) with its executions and logs; devices keep what they report of it')).action(async (jobId: string, o: Common) => {
    const r = await new ApiClient(o).call<{ deleted: JobRecord }>('DELETE', `/api/v1/jobs/${pathSegment('job id', jobId)}`);
    print(o, r, `job ${r.deleted.jobId} deleted (${r.deleted.status}, ${r.deleted.artifactName}@${r.deleted.artifactVersion})`);
  });
  withApi(job.command('log <jobId> [deviceId]').description("a device's log of its failed attempt of the job; without a device, the devices whose logs the job keeps"))
    .option('--limit <n>', 'page size (the list)', '100')
    .option('--after <cursor>', 'cursor (the list)')
    .action(async (jobId: string, deviceId: string | undefined, o: Common & { limit: string; after?: string }) => {
      const api = new ApiClient(o);
      const base = `/api/v1/jobs/${pathSegment('job id', jobId)}/logs`;
      if (deviceId === undefined) {
        const q = new URLSearchParams({ limit: o.limit, ...(o.after ? { after: o.after } : {}) });
        const page = await api.call<Page<JobLogSummary>>('GET', `${base}?${q}`);
        const lines = page.items.map((l) => `${l.deviceId}  ${l.agentJobId}  ${new Date(l.receivedAt).toISOString()}  ${l.lineCount} line(s)${l.dropped > 0 ? `, ${l.dropped} dropped` : ''}`);
        print(o, page, (lines.join('\n') || `no device sent a log for job ${jobId} (a device sends one when an attempt fails)`) + (page.next ? `\n(more: --after ${page.next})` : ''));
        return;
      }
      const log = await api.call<JobLogRecord>('GET', `${base}/${pathSegment('device id', deviceId)}`);
      const head = `${log.deviceId}: log of job ${log.agentJobId}, received ${new Date(log.receivedAt).toISOString()}`;
      const body = log.dropped > 0 ? [...log.lines.slice(0, JOB_LOG_HEAD_LINES), `… ${log.dropped} line(s) dropped by the device …`, ...log.lines.slice(JOB_LOG_HEAD_LINES)] : log.lines;
      print(o, log, [head, ...body].join('\n'));
    });
  withApi(job.command('watch <jobId>').description('a live progress bar and counts per state until the job ends'))
    .option('--interval <ms>', `poll interval (${MIN_WATCH_INTERVAL_MS} to ${MAX_WATCH_INTERVAL_MS})`, '1000')
    .option('--timeout <s>', 'give up (exit 1) after this many seconds')
    .action(async (jobId: string, o: Common & { interval: string; timeout?: string }) => {
      const intervalMs = number('--interval', o.interval) ?? 1000;
      // a watch polls the server: 0 would poll it as fast as it answers
      // and a timer holds at most 2^31-1 ms: a longer pause ended at once, polling every millisecond
      if (intervalMs < MIN_WATCH_INTERVAL_MS || intervalMs > MAX_WATCH_INTERVAL_MS) {
        throw new UpdraftError('BAD_REQUEST', `--interval must be a number of milliseconds from ${MIN_WATCH_INTERVAL_MS} to ${MAX_WATCH_INTERVAL_MS} (about 24.8 days) between polls, got ${o.interval}`);
      }
      const timeoutS = number('--timeout', o.timeout);
      if (timeoutS !== undefined && timeoutS <= 0) throw new UpdraftError('BAD_REQUEST', `--timeout must be a number of seconds above 0, got ${o.timeout}`);
      await watchJob(new ApiClient(o), jobId, { json: o.json === true, intervalMs, ...(timeoutS !== undefined ? { timeoutMs: timeoutS * 1000 } : {}) });
    });

  // ---- artifacts, devices, fleet
  withApi(parent(program, 'artifact', 'manage software artifacts').command('show <name@version>').description('one artifact')).action(async (ref: string, o: Common) => {
    const { name, version } = parseArtifactRef(ref);
    const a = await new ApiClient(o).call<{ name: string; version: string; sha256: string; size: number }>('GET', `/api/v1/artifacts/${pathSegment('artifact name', name)}/${pathSegment('artifact version', version)}`);
    print(o, a, `${a.name}@${a.version}\n  sha256 ${a.sha256}\n  size   ${a.size} bytes`);
  });
  withApi(parent(program, 'device', 'register and inspect devices').command('history <id>').description("a device's jobs and outcomes, newest first"))
    .option('--limit <n>', 'page size', '100')
    .option('--after <cursor>', 'cursor (older jobs)')
    .action(async (id: string, o: Common & { limit: string; after?: string }) => {
      const q = new URLSearchParams({ limit: o.limit, ...(o.after ? { after: o.after } : {}) });
      const r = await new ApiClient(o).call<{ items: (ExecutionRecord & { artifact: string | null; log?: { lineCount: number } })[]; next?: string }>('GET', `/api/v1/devices/${pathSegment('device id', id)}/history?${q}`);
      const lines = r.items.map((x) => `${new Date(x.queuedAt).toISOString()}  ${x.jobId}  ${x.artifact ?? '?'}  ${x.status}${(x.attempt ?? 1) > 1 ? ` (attempt ${x.attempt})` : ''}  ${[x.details.error, succeededNote(x)].filter(Boolean).join('; ')}${x.log ? `  [log: updraft job log ${x.jobId} ${id}]` : ''}`.trimEnd());
      print(o, r, (lines.join('\n') || `no jobs for ${id}`) + (r.next ? `\n(more: --after ${r.next})` : ''));
    });
  withApi(program.command('status').description('fleet summary: devices, versions, jobs')).action(async (o: Common) => {
    type Summary = { devices: Record<string, number>; versions: { name: string | null; version: string | null; devices: number }[]; jobs: Record<string, number>; generatedAt?: number };
    const s = await new ApiClient(o).call<Summary>('GET', '/api/v1/fleet/status');
    const lines = [
      `devices: ${s.devices.registered} registered, ${s.devices.online} online, ${s.devices.reporting} reporting, ${s.devices.revoked} revoked`,
      'versions:',
      // an agent started with --initial-version reports no name: said so, not `?@1.0.0` (QA)
      ...(s.versions.length ? s.versions.map((v) => `  ${v.name === null ? `${v.version ?? '?'} (no software name reported)` : `${v.name}@${v.version ?? '?'}`}  ${v.devices}`) : ['  (no reports yet)']),
      `jobs: ${Object.entries(s.jobs).filter(([, n]) => n > 0).map(([k, n]) => `${k} ${n}`).join(', ') || 'none'}`,
      // the server answers from its cached counts (api.md, Fleet counts are cached): say how old they are
      ...(typeof s.generatedAt === 'number' ? [`counted ${new Date(s.generatedAt).toISOString()} (${ageOf(Date.now() - s.generatedAt)})`] : []),
    ];
    print(o, s, lines.join('\n'));
  });
}

/** How long ago, for a person: seconds under two minutes, then minutes, then hours (a clock behind the server's: 0 s). */
function ageOf(ms: number): string {
  const seconds = Math.max(0, Math.round(ms / 1000));
  if (seconds < 120) return `${seconds} s ago`;
  if (seconds < 7_200) return `${Math.round(seconds / 60)} min ago`;
  return `${Math.round(seconds / 3_600)} h ago`;
}
