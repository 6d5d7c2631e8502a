/**
 * The create-rollout form's model: the form's values, the API request built from them, and
 * the server's validation message split back onto the fields. The server is the one
 * validator (src/jobs/job-spec.ts): it reports every problem at once, joined by "; ", each
 * naming its field (`plan.waves[1].percent must be...`), so the form can put each message
 * next to its field without duplicating the rules.
 */

/** One wave row of the form. */
export interface WaveForm {
  size: string;
  unit: 'percent' | 'count';
  threshold: string;
  approval: boolean;
}

/** Everything the form holds, as typed text. */
export interface JobForm {
  artifact: string;
  description: string;
  devices: string;
  groups: string;
  query: string;
  continuous: boolean;
  waves: WaveForm[];
  maxPerMinute: string;
  rampInitial: string;
  rampFactor: string;
  /** One maintenance window: opens at HH:MM, for minutes, on days (empty: every day), in a time zone (empty: UTC). */
  windowStart: string;
  windowMinutes: string;
  windowDays: string;
  timeZone: string;
  abortType: string;
  abortPercent: string;
  abortMin: string;
  rollback: boolean;
  inProgressSeconds: string;
  stepSeconds: string;
  retries: string;
  allowDowngrade: boolean;
}

/** A new form: one wave taking every target. */
export function emptyForm(): JobForm {
  return {
    artifact: '',
    description: '',
    devices: '',
    groups: '',
    query: '',
    continuous: false,
    waves: [{ size: '100', unit: 'percent', threshold: '', approval: false }],
    maxPerMinute: '',
    rampInitial: '',
    rampFactor: '',
    windowStart: '',
    windowMinutes: '',
    windowDays: '',
    timeZone: '',
    abortType: 'ANY',
    abortPercent: '',
    abortMin: '',
    rollback: false,
    inProgressSeconds: '',
    stepSeconds: '',
    retries: '',
    allowDowngrade: false,
  };
}

const list = (text: string) => text.split(/[\s,]+/).filter(Boolean);
// typed text goes to the server as a number when it is one, else as typed, so that the
// server's message names the problem ("must be a positive integer")
const num = (text: string): number | string => (text.trim() !== '' && Number.isFinite(Number(text)) ? Number(text) : text.trim());

/** The POST /api/v1/jobs body. */
export function toRequest(f: JobForm): Record<string, unknown> {
  const targets: Record<string, unknown> = {};
  if (list(f.devices).length) targets.devices = list(f.devices);
  if (list(f.groups).length) targets.groups = list(f.groups);
  if (f.query.trim()) targets.query = f.query.trim();
  const waves = f.waves.map((w, i) => {
    const wave: Record<string, unknown> = {};
    // the last wave may leave its size empty: it takes the rest
    if (w.size.trim() !== '' || i < f.waves.length - 1) wave[w.unit] = num(w.size);
    if (w.threshold.trim() !== '') wave.successThreshold = num(w.threshold);
    if (w.approval) wave.requireApproval = true;
    return wave;
  });
  const plan: Record<string, unknown> = { waves };
  if (f.maxPerMinute.trim()) plan.maxPerMinute = num(f.maxPerMinute);
  if (f.rampInitial.trim() || f.rampFactor.trim()) plan.rampUp = { initialPerMinute: num(f.rampInitial), factor: num(f.rampFactor || '2') };
  if (f.windowStart.trim() || f.windowMinutes.trim() || f.windowDays.trim()) {
    const days = list(f.windowDays.toLowerCase());
    plan.windows = [{ start: f.windowStart.trim(), minutes: num(f.windowMinutes), ...(days.length ? { days } : {}) }];
  }
  if (f.timeZone.trim()) plan.timeZone = f.timeZone.trim();
  const body: Record<string, unknown> = { artifact: f.artifact, targets, plan, type: f.continuous ? 'continuous' : 'snapshot' };
  if (f.description.trim()) body.description = f.description.trim();
  if (f.abortPercent.trim() || f.rollback) {
    body.abort = {
      rules: f.abortPercent.trim() ? [{ type: f.abortType, thresholdPercent: num(f.abortPercent), ...(f.abortMin.trim() ? { minFinished: num(f.abortMin) } : {}) }] : [],
      rollback: f.rollback,
    };
  }
  const timeouts: Record<string, unknown> = {};
  if (f.inProgressSeconds.trim()) timeouts.inProgressSeconds = num(f.inProgressSeconds);
  if (f.stepSeconds.trim()) timeouts.stepSeconds = num(f.stepSeconds);
  if (Object.keys(timeouts).length) body.timeouts = timeouts;
  if (f.retries.trim()) body.retries = { limit: num(f.retries), on: ['FAILED', 'TIMED_OUT'] };
  if (f.allowDowngrade) body.allowDowngrade = true;
  return body;
}

/**
 * Field keys errors attach to: form fields, a wave's controls (`wave-<i>` its size,
 * `wave-<i>-threshold`, `wave-<i>-approval`), `targets`, or `form` for what is no field's.
 */
export type ErrorKey = keyof JobForm | `wave-${number}` | `wave-${number}-threshold` | `wave-${number}-approval` | 'targets' | 'form';

/** Which field a server message is about. */
export function fieldOf(message: string): ErrorKey {
  const m = /plan\.waves\[(\d+)\]/.exec(message);
  if (m) {
    const i = Number(m[1]);
    // "plan.waves[i].successThreshold must be..." and "plan.waves[i] is the last wave: a successThreshold gates..."
    if (/^plan\.waves\[\d+\](\.successThreshold| is the last wave: a successThreshold)/.test(message)) return `wave-${i}-threshold`;
    if (/^plan\.waves\[\d+\](\.requireApproval| is the last wave: requireApproval)/.test(message)) return `wave-${i}-approval`;
    return `wave-${i}`;
  }
  const rules: [RegExp, ErrorKey][] = [
    // a field the form never sends (a request built elsewhere): no control of the form's
    [/^unknown field "[^".]*"/, 'form'],
    [/^plan\.waves/, 'waves'],
    [/^plan\.maxPerMinute/, 'maxPerMinute'],
    [/^plan\.rampUp\.factor/, 'rampFactor'],
    [/^plan\.rampUp\.initialPerMinute/, 'rampInitial'],
    [/^plan\.rampUp/, 'rampInitial'],
    [/^plan\.windows\[\d+\]\.minutes/, 'windowMinutes'],
    [/^plan\.windows\[\d+\]\.days/, 'windowDays'],
    [/^plan\.windows/, 'windowStart'],
    [/^plan\.timeZone/, 'timeZone'],
    [/^abort\.rules\[\d+\]\.minFinished/, 'abortMin'],
    [/^abort\.rules\[\d+\]\.type/, 'abortType'],
    [/^abort/, 'abortPercent'],
    [/^timeouts\.inProgressSeconds/, 'inProgressSeconds'],
    [/^timeouts\.stepSeconds/, 'stepSeconds'],
    [/^retries/, 'retries'],
    [/^targets\.query/, 'query'],
    [/^targets\.groups|^group /, 'groups'],
    [/^targets\.devices|valid device id|^device /, 'devices'],
    [/targets|target set/, 'targets'],
    [/artifact/, 'artifact'],
    [/^description/, 'description'],
  ];
  for (const [re, key] of rules) if (re.test(message)) return key;
  return 'form';
}

/** Refusals whose message is about the request (a field, an artifact or device that does not exist); the rest (no server, a server error) are no field's. */
const ABOUT_THE_REQUEST = new Set(['BAD_REQUEST', 'NOT_FOUND', 'CONFLICT']);

/**
 * The server's message split onto fields; several messages for one field are joined. Only
 * BAD_REQUEST lists several problems; other refusals (an artifact or device that does not
 * exist) are one message that goes on with advice after its "; ". A failure that is not a
 * refusal of the request (`NETWORK`: the server cannot be reached, `INTERNAL`...) is the
 * form's, whatever words it contains.
 */
export function fieldErrors(message: string, code = 'BAD_REQUEST'): Partial<Record<ErrorKey, string>> {
  if (!ABOUT_THE_REQUEST.has(code)) return { form: message };
  const out: Partial<Record<ErrorKey, string>> = {};
  const parts: string[] = [];
  for (const part of code === 'BAD_REQUEST' ? message.split('; ') : [message]) {
    // advice after a problem's own "; " ("... none follows; to stop a failing last wave, use
    // abort rules") is that problem's, not a problem of its own
    if (/^to \w/.test(part) && parts.length > 0) parts[parts.length - 1] += `; ${part}`;
    else parts.push(part);
  }
  for (const part of parts) {
    const key = fieldOf(part);
    out[key] = out[key] ? `${out[key]}; ${part}` : part;
  }
  return out;
}

/**
 * The summary above the form: what was refused, how many fields need attention, and what is
 * no field's said as it is (not counted as a field: "the server cannot be reached...").
 */
export function errorSummary(errors: Partial<Record<ErrorKey, string>>, refused: 'preview' | 'create'): string {
  const fields = Object.keys(errors).filter((k) => k !== 'form').length;
  const head = refused === 'preview' ? 'Nothing to preview' : 'The job was not created';
  const parts: string[] = [];
  if (fields > 0) parts.push(`${fields === 1 ? 'one field needs' : `${fields} fields need`} attention.`);
  if (errors.form) parts.push(/[.!?]$/.test(errors.form) ? errors.form : `${errors.form}.`);
  return parts.length ? `${head}: ${parts.join(' ')}` : '';
}
