/**
 * A job's times (created, started, finished) and its settings as the API returns them
 * (`GET /api/v1/jobs/<id>`: the spec with its defaults filled in, src/jobs/job-spec.ts): type,
 * targets, waves, rate, schedule and windows, abort rules and rollback, timeouts, retries,
 * downgrades. Everything is rendered as text (a query or group name is the operator's, but
 * nothing here is put in as HTML).
 */
import { Fragment } from 'preact';
import { count, dateTime } from '../format.ts';
import type { Job, JobSpec } from '../types.ts';

/** "3600 s (1 h)": seconds as given, with a rounder reading beside them. */
function seconds(s: number): string {
  if (s >= 3600 && s % 3600 === 0) return `${count(s)} s (${s / 3600} h)`;
  if (s >= 60 && s % 60 === 0) return `${count(s)} s (${s / 60} min)`;
  return `${count(s)} s`;
}

/** One wave as the operator wrote it: its size, threshold and approval. */
function wave(w: NonNullable<NonNullable<JobSpec['plan']>['waves']>[number], i: number, last: boolean): string {
  const written = w.count !== undefined ? `${count(w.count)} device${w.count === 1 ? '' : 's'}` : w.percent !== undefined ? `up to ${w.percent}% of the targets` : last ? 'the rest' : 'size not given';
  // the last wave takes the rest whatever its size says (jobs/rollout-math.ts): said where it could read otherwise
  const size = last && (w.count !== undefined || (w.percent !== undefined && w.percent < 100)) ? `${written}, as the last wave every device left` : written;
  // a threshold of 0 (the default) gates nothing: not said as "once 0% ... succeeded" (QA)
  const threshold = w.successThreshold !== undefined && w.successThreshold > 0 && !last ? `, next wave once ${w.successThreshold}% of its finished devices succeeded` : '';
  return `Wave ${i + 1}: ${size}${threshold}${w.requireApproval ? ', then waits for approval' : ''}`;
}

/** The job's targets in words: a job may list 100,000 device ids, so those are counted. */
function targets(t: NonNullable<JobSpec['targets']>): string {
  const parts: string[] = [];
  if (t.devices && t.devices.length > 0) parts.push(`${count(t.devices.length)} device${t.devices.length === 1 ? '' : 's'} listed`);
  if (t.groups && t.groups.length > 0) parts.push(`group${t.groups.length === 1 ? '' : 's'} ${t.groups.join(', ')}`);
  if (t.query) parts.push(`query ${t.query}`);
  return parts.length > 0 ? parts.join('; ') : 'none';
}

/** Created, started and finished, with the settings below them. */
export function JobSettings({ job }: { job: Job }) {
  const spec = job.spec;
  const started = job.progress?.startedAt;
  // finishedAt is the engine's; a job finished by an older server has its last change only
  const finished = job.progress?.finishedAt ?? (job.status === 'COMPLETED' || job.status === 'CANCELED' || job.status === 'ABORTED' ? job.updatedAt : undefined);
  const final = job.status === 'COMPLETED' || job.status === 'CANCELED' || job.status === 'ABORTED';
  const plan = spec?.plan;
  const waves = plan?.waves ?? [];
  const rules = spec?.abort?.rules ?? [];
  const rows: [string, string][] = [];
  if (spec) {
    rows.push(['Type', spec.type === 'continuous' ? 'continuous (devices that match later join its last wave)' : 'snapshot (targets fixed at creation)']);
    if (spec.targets) rows.push(['Targets', targets(spec.targets)]);
    rows.push(['Waves', waves.length === 0 ? 'one wave' : waves.map((w, i) => wave(w, i, i === waves.length - 1)).join('; ')]);
    rows.push(['Rate', plan?.maxPerMinute !== undefined ? `at most ${count(plan.maxPerMinute)} commands a minute` : 'no limit']);
    if (plan?.rampUp) rows.push(['Ramp-up', `${count(plan.rampUp.initialPerMinute)} a minute in a wave's first minute, times ${plan.rampUp.factor} each minute after`]);
    rows.push(['In flight', plan?.maxInFlight !== undefined ? `at most ${count(plan.maxInFlight)} devices with a command and no outcome` : 'no limit']);
    if (plan?.startAt !== undefined) rows.push(['Starts at', dateTime(plan.startAt)]);
    if (plan?.windows && plan.windows.length > 0) rows.push(['Maintenance windows', `${plan.windows.map((w) => `${w.start} for ${w.minutes} min${w.days ? ` on ${w.days.join(', ')}` : ''}`).join('; ')} (${plan.timeZone === 'device' ? "each device's time zone" : (plan.timeZone ?? 'UTC')})`]);
    rows.push(['Abort rules', rules.length === 0 ? 'none' : rules.map((r) => `${r.type} at ${r.thresholdPercent}% or more${r.minFinished !== undefined ? ` once ${count(r.minFinished)} finished` : ''}`).join('; ')]);
    rows.push(['Rollback on abort', spec.abort?.rollback ? 'yes' : 'no']);
    rows.push(['In-progress timeout', spec.timeouts?.inProgressSeconds !== undefined ? seconds(spec.timeouts.inProgressSeconds) : 'none']);
    rows.push(['Step timeout', spec.timeouts?.stepSeconds !== undefined ? seconds(spec.timeouts.stepSeconds) : 'none']);
    rows.push(['Retries', spec.retries && spec.retries.limit > 0 ? `up to ${spec.retries.limit} on ${(spec.retries.on ?? []).join(', ') || 'nothing'}` : 'none']);
    rows.push(['Downgrades', spec.allowDowngrade ? 'allowed' : 'refused (a device running a higher version ends REJECTED)']);
  }
  return (
    <>
      <section aria-labelledby="times-h">
        <h2 id="times-h">Times</h2>
        <dl class="settings" data-testid="job-times">
          <dt>Created</dt>
          <dd>{dateTime(job.createdAt)}</dd>
          <dt>Started</dt>
          <dd>{started !== undefined ? dateTime(started) : final ? 'never started' : 'not started yet'}</dd>
          <dt>{job.status === 'COMPLETED' ? 'Completed' : job.status === 'CANCELED' ? 'Canceled' : job.status === 'ABORTED' ? 'Aborted' : 'Finished'}</dt>
          <dd>{finished !== undefined ? dateTime(finished) : 'not finished'}</dd>
        </dl>
      </section>
      <section aria-labelledby="settings-h">
        <h2 id="settings-h">Settings</h2>
        {!spec ? (
          <p class="muted">This job was created without a rollout specification (an older server's): one wave, no rate, no abort rules, timeouts or retries.</p>
        ) : (
          <dl class="settings" data-testid="job-settings">
            {rows.map(([k, v]) => (
              <Fragment key={k}>
                <dt>{k}</dt>
                <dd class="long-text">{v}</dd>
              </Fragment>
            ))}
          </dl>
        )}
      </section>
    </>
  );
}
