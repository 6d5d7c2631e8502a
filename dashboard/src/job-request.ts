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

/** Field keys errors attach to: form fields, `wave-<i>` rows, or `form` for the rest. */
export type ErrorKey = keyof JobForm | `wave-${number}` | 'targets' | 'rampUp' | 'abort' | 'form';

/** Which field a server message is about. */
export function fieldOf(message: string): ErrorKey {
  const m = /plan\.waves\[(\d+)\]/.exec(message);
  if (m) return `wave-${Number(m[1])}`;
  const rules: [RegExp, ErrorKey][] = [
    [/^plan\.waves/, 'waves'],
    [/^plan\.maxPerMinute/, 'maxPerMinute'],
    [/^plan\.rampUp/, 'rampUp'],
    [/^plan\.windows/, 'windowStart'],
    [/^plan\.timeZone/, 'timeZone'],
    [/^abort/, 'abort'],
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

/**
 * The server's message split onto fields; several messages for one field are joined. Only
 * BAD_REQUEST lists several problems; other refusals (an artifact or device that does not
 * exist) are one message that goes on with advice after its "; ".
 */
export function fieldErrors(message: string, code = 'BAD_REQUEST'): Partial<Record<ErrorKey, string>> {
  const out: Partial<Record<ErrorKey, string>> = {};
  for (const part of code === 'BAD_REQUEST' ? message.split('; ') : [message]) {
    const key = fieldOf(part);
    out[key] = out[key] ? `${out[key]}; ${part}` : part;
  }
  return out;
}
