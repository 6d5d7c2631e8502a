import { percent } from '../format.ts';

/** A labelled progress bar: the native <progress> element, so screen readers announce it. */
export function ProgressBar({ label, value, max, detail }: { label: string; value: number; max: number; detail?: string }) {
  const pct = percent(value, max);
  return (
    <div class="progress">
      <div class="progress-label">
        <span>{label}</span>
        <span>{detail ?? `${pct}%`}</span>
      </div>
      <progress value={value} max={max || 1} aria-label={`${label}: ${pct}%`}>
        {pct}%
      </progress>
    </div>
  );
}
