/** CLI commands that talk to the operator API: artifact, deploy, device, job. */
import { createReadStream } from 'node:fs';
import { stat } from 'node:fs/promises';
import type { Command } from 'commander';
import { UpdraftError } from '../errors.ts';
import type { ShadowDocument } from '../protocol/shadow-messages.ts';
import type { ArtifactRecord, ExecutionRecord, JobRecord } from '../store/state-store.ts';
import { ApiClient, type ApiOptions } from './api-client.ts';

interface Common extends ApiOptions {
  json?: boolean;
}

function withApi(cmd: Command): Command {
  return cmd
    .option('--server <url>', 'Updraft server URL [env UPDRAFT_SERVER, default http://127.0.0.1:8080]')
    .option('--token <token>', 'operator token [env UPDRAFT_TOKEN, default: read from <data-dir>/operator-token]')
    .option('--data-dir <dir>', 'the server data directory holding the operator token', './data')
    .option('--json', 'print JSON');
}

function print(opts: Common, json: unknown, text: string): void {
  process.stdout.write(opts.json ? JSON.stringify(json, null, 2) + '\n' : text + '\n');
}

function executionLine(x: ExecutionRecord): string {
  const d = x.details as { agentStatus?: string; error?: string; progress?: number; version?: string };
  const extra = [d.agentStatus, d.version ? `runs ${d.version}` : undefined, d.error ? `error: ${d.error}` : undefined].filter(Boolean).join(', ');
  return `  ${x.jobId}  ${x.status.padEnd(11)}  ${new Date(x.updatedAt).toISOString()}  ${extra}`;
}

function block(label: string, value: unknown): string {
  if (value === undefined) return `${label}: (none)`;
  return `${label}:\n${JSON.stringify(value, null, 2).replace(/^/gm, '  ')}`;
}

/** Adds the API commands. */
export function addApiCommands(program: Command): void {
  const artifact = program.command('artifact').description('manage software artifacts');
  withApi(artifact.command('add <file>').description('store a build: records SHA-256 and size'))
    .requiredOption('--name <name>', 'artifact name, e.g. fw')
    .requiredOption('--version <version>', 'semantic version, e.g. 2.0.0')
    .action(async (file: string, opts: Common & { name: string; version: string }) => {
      const info = await stat(file).catch(() => {
        throw new UpdraftError('BAD_REQUEST', `cannot read ${file}: no such file`);
      });
      if (!info.isFile()) throw new UpdraftError('BAD_REQUEST', `${file} is not a regular file`);
      const api = new ApiClient(opts);
      const q = new URLSearchParams({ name: opts.name, version: opts.version });
      const rec = await api.call<ArtifactRecord>('POST', `/api/v1/artifacts?${q}`, createReadStream(file));
      print(opts, rec, `added ${rec.name}@${rec.version}\n  sha256 ${rec.sha256}\n  size   ${rec.size} bytes`);
    });
  withApi(artifact.command('list').description('list artifacts')).action(async (opts: Common) => {
    const { items } = await new ApiClient(opts).call<{ items: ArtifactRecord[] }>('GET', '/api/v1/artifacts');
    print(opts, items, items.length === 0 ? 'no artifacts' : items.map((a) => `${a.name}@${a.version}  ${a.size} bytes  sha256 ${a.sha256}`).join('\n'));
  });

  withApi(program.command('deploy').description('set the desired software of devices (creates a job with a unique id)'))
    .requiredOption('--device <id...>', 'target device id (repeatable)')
    .requiredOption('--artifact <name@version>', 'artifact to install, e.g. fw@2.0.0')
    .action(async (opts: Common & { device: string[]; artifact: string }) => {
      const res = await new ApiClient(opts).call<{ job: JobRecord; executions: ExecutionRecord[] }>('POST', '/api/v1/deployments', { devices: opts.device, artifact: opts.artifact });
      print(opts, res, `job ${res.job.jobId}: ${res.job.artifactName}@${res.job.artifactVersion} to ${res.executions.length} device(s)`);
    });

  const device = program.command('device').description('inspect devices');
  withApi(device.command('show <id>').description("a device's desired, reported and delta state and its jobs")).action(async (id: string, opts: Common) => {
    const d = await new ApiClient(opts).call<{ deviceId: string; online: boolean; shadow: ShadowDocument; executions: ExecutionRecord[] }>('GET', `/api/v1/devices/${encodeURIComponent(id)}`);
    const lines = [
      `device ${d.deviceId}  ${d.online ? 'online' : 'offline'}  shadow version ${d.shadow.version}`,
      block('desired', d.shadow.state.desired),
      block('reported', d.shadow.state.reported),
      block('delta', d.shadow.state.delta),
      d.executions.length === 0 ? 'jobs: (none)' : `jobs:\n${d.executions.map(executionLine).join('\n')}`,
    ];
    print(opts, d, lines.join('\n'));
  });
  withApi(device.command('list').description('list devices'))
    .option('--limit <n>', 'page size', '100')
    .option('--after <id>', 'cursor: list devices after this id')
    .action(async (opts: Common & { limit: string; after?: string }) => {
      const q = new URLSearchParams({ limit: opts.limit, ...(opts.after ? { after: opts.after } : {}) });
      type Row = { deviceId: string; online: boolean; reported: { version?: string; status?: string } | null };
      const page = await new ApiClient(opts).call<{ items: Row[]; next?: string }>('GET', `/api/v1/devices?${q}`);
      const text = page.items.map((r) => `${r.deviceId}  ${r.online ? 'online ' : 'offline'}  ${r.reported?.version ?? '-'}  ${r.reported?.status ?? ''}`).join('\n');
      print(opts, page, (text || 'no devices') + (page.next ? `\n(more: --after ${page.next})` : ''));
    });

  const job = program.command('job').description('inspect jobs');
  withApi(job.command('show <jobId>').description('a job and the outcome on each device')).action(async (jobId: string, opts: Common) => {
    const r = await new ApiClient(opts).call<{ job: JobRecord; executions: ExecutionRecord[] }>('GET', `/api/v1/jobs/${encodeURIComponent(jobId)}`);
    const lines = [`job ${r.job.jobId}  ${r.job.artifactName}@${r.job.artifactVersion}  ${r.job.status}`, ...r.executions.map((x) => `  ${x.deviceId}  ${x.status}  ${(x.details as { error?: string }).error ?? ''}`)];
    print(opts, r, lines.join('\n'));
  });
}
