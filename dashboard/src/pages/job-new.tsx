/**
 * Create a rollout: artifact, targets, waves with thresholds, rate, a maintenance window,
 * abort rule, timeouts and retries. The server validates (job-request.ts explains how its
 * messages land next to the fields); "Preview" shows what the job would target, wave by
 * wave, without creating it; on success the job's page opens.
 */
import { useRef, useState } from 'preact/hooks';
import { ApiError, api, getAllPages } from '../api.ts';
import { Field } from '../components/field.tsx';
import { useLiveList, useReadOnly } from '../hooks.ts';
import { emptyForm, errorSummary, fieldErrors, toRequest, type ErrorKey, type JobForm, type WaveForm } from '../job-request.ts';
import { navigate } from '../router.tsx';
import { count as count0, dateTime, jobHref } from '../format.ts';
import type { Artifact, JobPreview, JobView, Page } from '../types.ts';

export function JobNewPage() {
  const readOnly = useReadOnly();
  // a viewer is shown no form: nothing to read, no live stream (the header would say "Live" of nothing)
  // a build uploaded or deleted from the CLI or another tab meanwhile is offered, or not, at once
  // (read again once the stream reconnects too, for what changed while it was not)
  // every build, not only the newest page: the list is paged (1000 a request), the picker offers them all
  const artifacts = useLiveList<Page<Artifact>>(readOnly ? null : '/artifacts?limit=1000', readOnly ? null : { types: 'artifact.changed' }, 1000, undefined, getAllPages);
  const [f, setF] = useState<JobForm>(emptyForm());
  const [errors, setErrors] = useState<Partial<Record<ErrorKey, string>>>({});
  const [busy, setBusy] = useState(false);
  /** What the errors shown refused: a preview creates nothing, so it must not say the job was not created. */
  const [refused, setRefused] = useState<'preview' | 'create'>('create');
  const summary = useRef<HTMLDivElement>(null);
  const set = <K extends keyof JobForm>(k: K, v: JobForm[K]) => setF({ ...f, [k]: v });
  const setWave = (i: number, w: Partial<WaveForm>) => set('waves', f.waves.map((x, j) => (j === i ? { ...x, ...w } : x)));
  // props that tie a control to its error message
  const aria = (key: ErrorKey, id: string) => ({ id, 'aria-invalid': errors[key] ? ('true' as const) : undefined, 'aria-describedby': errors[key] ? `${id}-error` : undefined });

  const [preview, setPreview] = useState<JobPreview | undefined>();
  // the same request, checked and resolved by the server without creating anything
  const showPreview = async () => {
    setBusy(true);
    setErrors({});
    setPreview(undefined);
    const body = toRequest(f);
    try {
      setPreview(await api<JobPreview>('POST', '/jobs/preview', body));
    } catch (err) {
      setRefused('preview');
      setErrors(err instanceof ApiError ? fieldErrors(err.message, err.code) : { form: (err as Error).message });
      setTimeout(() => summary.current?.focus(), 0);
    } finally {
      setBusy(false);
    }
  };

  const submit = async (e: Event) => {
    e.preventDefault();
    setBusy(true);
    setErrors({});
    const body = toRequest(f);
    try {
      const view = await api<JobView>('POST', '/jobs', body);
      navigate(jobHref(view.job.jobId));
    } catch (err) {
      setRefused('create');
      setErrors(err instanceof ApiError ? fieldErrors(err.message, err.code) : { form: (err as Error).message });
      setBusy(false);
      // move focus to the summary so keyboard and screen-reader users hear what went wrong
      setTimeout(() => summary.current?.focus(), 0);
    }
  };

  const summaryText = errorSummary(errors, refused);
  if (readOnly) {
    return (
      <>
        <h1>New rollout</h1>
        <p role="note">This tab is signed in with a read-only viewer token: rollouts are started with the operator token.</p>
      </>
    );
  }
  return (
    <>
      <h1>New rollout</h1>
      <div ref={summary} tabIndex={-1} class={summaryText ? 'error-summary' : ''} role={summaryText ? 'alert' : undefined} data-testid="error-summary">
        {summaryText && <p>{summaryText}</p>}
      </div>
      <form class="job-form" onSubmit={submit} noValidate>
        <fieldset>
          <legend>What</legend>
          <Field id="j-artifact" label="Artifact" error={errors.artifact}>
            <select {...aria('artifact', 'j-artifact')} value={f.artifact} onChange={(e) => set('artifact', e.currentTarget.value)}>
              <option value="">choose a build…</option>
              {artifacts.data?.items.map((a) => (
                <option key={`${a.name}@${a.version}`} value={`${a.name}@${a.version}`}>
                  {a.name}@{a.version}
                </option>
              ))}
            </select>
          </Field>
          <Field id="j-description" label="Description (optional)" error={errors.description}>
            <input {...aria('description', 'j-description')} value={f.description} onInput={(e) => set('description', e.currentTarget.value)} />
          </Field>
          <label class="check">
            <input type="checkbox" checked={f.allowDowngrade} onChange={(e) => set('allowDowngrade', e.currentTarget.checked)} /> Allow downgrades (devices running a higher version take this one)
          </label>
        </fieldset>

        <fieldset aria-describedby={errors.targets ? 'j-targets-error' : undefined}>
          <legend>Targets</legend>
          <p class="help">The union of the devices, the groups' members and the query's matches.</p>
          <Field id="j-devices" label="Device ids (comma or space separated)" error={errors.devices}>
            <textarea {...aria('devices', 'j-devices')} rows={2} value={f.devices} onInput={(e) => set('devices', e.currentTarget.value)} />
          </Field>
          <Field id="j-groups" label="Groups" error={errors.groups}>
            <input {...aria('groups', 'j-groups')} value={f.groups} onInput={(e) => set('groups', e.currentTarget.value)} />
          </Field>
          <Field id="j-query" label="Query" error={errors.query} help="e.g. reported.software.version < 2.0.0 and tags.region = eu">
            <input {...aria('query', 'j-query')} value={f.query} onInput={(e) => set('query', e.currentTarget.value)} />
          </Field>
          {errors.targets && (
            <p id="j-targets-error" class="field-error" role="alert">
              {errors.targets}
            </p>
          )}
          <label class="check">
            <input type="checkbox" checked={f.continuous} onChange={(e) => set('continuous', e.currentTarget.checked)} /> Continuous: devices that join a group or match the query later are added
          </label>
        </fieldset>

        <fieldset>
          <legend>Waves</legend>
          <p class="help">Sizes are cumulative percentages of all targets, or device counts; the last wave takes the rest. Below its success threshold a wave pauses the job.</p>
          {f.waves.map((w, i) => (
            <div class="wave-row" key={i} role="group" aria-label={`Wave ${i + 1}`}>
              <Field id={`w${i}-size`} label={`Wave ${i + 1} size`} error={errors[`wave-${i}`]}>
                <input {...aria(`wave-${i}`, `w${i}-size`)} inputMode="decimal" value={w.size} onInput={(e) => setWave(i, { size: e.currentTarget.value })} />
              </Field>
              <div class="field">
                <label for={`w${i}-unit`}>Unit</label>
                <select id={`w${i}-unit`} value={w.unit} onChange={(e) => setWave(i, { unit: e.currentTarget.value as WaveForm['unit'] })}>
                  <option value="percent">% of targets</option>
                  <option value="count">devices</option>
                </select>
              </div>
              <Field id={`w${i}-threshold`} label="Success threshold %" error={errors[`wave-${i}-threshold`]}>
                <input {...aria(`wave-${i}-threshold`, `w${i}-threshold`)} inputMode="decimal" value={w.threshold} placeholder="0" onInput={(e) => setWave(i, { threshold: e.currentTarget.value })} />
              </Field>
              <div class={`field${errors[`wave-${i}-approval`] ? ' invalid' : ''}`}>
                <label class="check">
                  <input type="checkbox" {...aria(`wave-${i}-approval`, `w${i}-approval`)} checked={w.approval} onChange={(e) => setWave(i, { approval: e.currentTarget.checked })} /> Wait for approval after
                </label>
                {errors[`wave-${i}-approval`] && (
                  <p id={`w${i}-approval-error`} class="field-error" role="alert">
                    {errors[`wave-${i}-approval`]}
                  </p>
                )}
              </div>
              {f.waves.length > 1 && (
                <button type="button" class="secondary" onClick={() => set('waves', f.waves.filter((_, j) => j !== i))} aria-label={`Remove wave ${i + 1}`}>
                  Remove
                </button>
              )}
            </div>
          ))}
          {errors.waves && (
            <p id="j-waves-error" class="field-error" role="alert">
              {errors.waves}
            </p>
          )}
          <button type="button" class="secondary" disabled={f.waves.length >= 20} onClick={() => set('waves', [...f.waves, { size: '', unit: 'percent', threshold: '', approval: false }])}>
            Add a wave
          </button>
        </fieldset>

        <fieldset>
          <legend>Rate and safety</legend>
          <div class="row">
            <Field id="j-rate" label="Most updates per minute" error={errors.maxPerMinute}>
              <input {...aria('maxPerMinute', 'j-rate')} inputMode="numeric" value={f.maxPerMinute} placeholder="no limit" onInput={(e) => set('maxPerMinute', e.currentTarget.value)} />
            </Field>
            <Field id="j-ramp" label="Ramp-up: first minute" error={errors.rampInitial}>
              <input {...aria('rampInitial', 'j-ramp')} inputMode="numeric" value={f.rampInitial} placeholder="none" onInput={(e) => set('rampInitial', e.currentTarget.value)} />
            </Field>
            <Field id="j-ramp-factor" label="Ramp-up factor per minute" error={errors.rampFactor}>
              <input {...aria('rampFactor', 'j-ramp-factor')} inputMode="decimal" value={f.rampFactor} placeholder="2" onInput={(e) => set('rampFactor', e.currentTarget.value)} />
            </Field>
          </div>
          <div class="row">
            <Field id="j-window" label="Maintenance window opens (HH:MM)" error={errors.windowStart}>
              <input {...aria('windowStart', 'j-window')} value={f.windowStart} placeholder="any time" onInput={(e) => set('windowStart', e.currentTarget.value)} />
            </Field>
            <Field id="j-window-minutes" label="Window open for (minutes)" error={errors.windowMinutes}>
              <input {...aria('windowMinutes', 'j-window-minutes')} inputMode="numeric" value={f.windowMinutes} placeholder="120" onInput={(e) => set('windowMinutes', e.currentTarget.value)} />
            </Field>
            <Field id="j-window-days" label="Window days" error={errors.windowDays}>
              <input {...aria('windowDays', 'j-window-days')} value={f.windowDays} placeholder="every day (or: sat, sun)" onInput={(e) => set('windowDays', e.currentTarget.value)} />
            </Field>
            <Field id="j-tz" label="Time zone of the window" error={errors.timeZone} help={'IANA (Europe/Madrid), or "device": each device\'s own, where it installs when the window is open'}>
              <input {...aria('timeZone', 'j-tz')} aria-describedby={errors.timeZone ? 'j-tz-error' : 'j-tz-help'} value={f.timeZone} placeholder="UTC" onInput={(e) => set('timeZone', e.currentTarget.value)} />
            </Field>
          </div>
          <div class="row">
            <Field id="j-abort-type" label="Abort on" error={errors.abortType}>
              <select {...aria('abortType', 'j-abort-type')} value={f.abortType} onChange={(e) => set('abortType', e.currentTarget.value)}>
                <option value="ANY">any failure</option>
                <option value="FAILED">FAILED</option>
                <option value="TIMED_OUT">TIMED_OUT</option>
                <option value="REJECTED">REJECTED</option>
              </select>
            </Field>
            <Field id="j-abort" label="Abort at failure %" error={errors.abortPercent}>
              <input {...aria('abortPercent', 'j-abort')} inputMode="decimal" value={f.abortPercent} placeholder="never" onInput={(e) => set('abortPercent', e.currentTarget.value)} />
            </Field>
            <Field id="j-abort-min" label="after at least (finished)" error={errors.abortMin}>
              <input {...aria('abortMin', 'j-abort-min')} inputMode="numeric" value={f.abortMin} placeholder="1" onInput={(e) => set('abortMin', e.currentTarget.value)} />
            </Field>
          </div>
          <label class="check">
            <input type="checkbox" checked={f.rollback} onChange={(e) => set('rollback', e.currentTarget.checked)} /> On abort, roll failed devices back
          </label>
          <div class="row">
            <Field id="j-timeout" label="In-progress timeout (s)" error={errors.inProgressSeconds}>
              <input {...aria('inProgressSeconds', 'j-timeout')} inputMode="numeric" value={f.inProgressSeconds} placeholder="none" onInput={(e) => set('inProgressSeconds', e.currentTarget.value)} />
            </Field>
            <Field id="j-step" label="Step timeout (s)" error={errors.stepSeconds}>
              <input {...aria('stepSeconds', 'j-step')} inputMode="numeric" value={f.stepSeconds} placeholder="none" onInput={(e) => set('stepSeconds', e.currentTarget.value)} />
            </Field>
            <Field id="j-retries" label="Retries" error={errors.retries}>
              <input {...aria('retries', 'j-retries')} inputMode="numeric" value={f.retries} placeholder="0" onInput={(e) => set('retries', e.currentTarget.value)} />
            </Field>
          </div>
        </fieldset>
        {preview && (
          <div class="preview" role="status" data-testid="preview">
            <p>
              Would send {preview.artifact} to {count0(preview.total)} device{preview.total === 1 ? '' : 's'}
              {preview.type === 'continuous' ? ' now, and to devices that match later' : ''}; starting {preview.startsAt > Date.now() + 60_000 ? dateTime(preview.startsAt) : 'at once'}
              {preview.minSendMinutes !== undefined ? `; sending every command takes at least ${preview.minSendMinutes} minute${preview.minSendMinutes === 1 ? '' : 's'} at this rate` : ''}.
            </p>
            <ul>
              {preview.waves.map((w) => (
                <li key={w.wave}>
                  Wave {w.wave + 1}: {count0(w.devices)} device{w.devices === 1 ? '' : 's'}
                  {w.first.length > 0 && <span class="muted"> ({w.first.join(', ')}{w.devices > w.first.length ? ', …' : ''})</span>}
                </li>
              ))}
            </ul>
            {preview.skipped && preview.skipped.downgrade + preview.skipped.incompatible > 0 && (
              <p data-testid="preview-skipped">
                Skipped (rejected, nothing sent) by what they reported
                {preview.skipped.scanned < preview.total ? `, among the first ${count0(preview.skipped.scanned)}` : ''}:{' '}
                {[preview.skipped.incompatible ? `${count0(preview.skipped.incompatible)} not compatible` : '', preview.skipped.downgrade ? `${count0(preview.skipped.downgrade)} running a higher version` : ''].filter(Boolean).join(', ')}
                <span class="muted"> ({preview.skipped.first.map((f) => `${f.deviceId}: ${f.error}`).join('; ')})</span>
              </p>
            )}
            {(preview.warnings ?? []).map((w) => (
              <p key={w} class="note-warn" data-testid="preview-warning">
                Warning: {w}
              </p>
            ))}
            {preview.installAtOnce && preview.installAtOnce.count > 0 && (
              <p data-testid="preview-at-once" class="note-warn">
                {count0(preview.installAtOnce.count)} device{preview.installAtOnce.count === 1 ? '' : 's'} would install at once, outside their windows: their agents do not hold an install for a window (older agents, or never connected)
                <span class="muted"> ({preview.installAtOnce.first.join(', ')}{preview.installAtOnce.count > preview.installAtOnce.first.length ? ', …' : ''})</span>
              </p>
            )}
          </div>
        )}
        <div class="controls">
          <button type="button" class="secondary" disabled={busy} onClick={showPreview}>
            Preview
          </button>
          <button type="submit" disabled={busy}>
            {busy ? 'Working…' : 'Start rollout'}
          </button>
        </div>
      </form>
    </>
  );
}
