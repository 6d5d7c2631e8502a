/**
 * A job's completions over time: stacked bars per time bucket (succeeded, failed) and the
 * cumulative total as a line, hand-drawn SVG. Two scales: the bars' on the left (the busiest
 * bucket), the line's on the right (all completions), and the caption says how long a bucket
 * is. The accessible name states the totals.
 */
import { count, span, time } from '../format.ts';
import type { JobTimeline } from '../types.ts';

export function TimelineChart({ timeline }: { timeline: JobTimeline }) {
  const { buckets } = timeline;
  const width = 600;
  const height = 180;
  const pad = { l: 44, r: 44, t: 10, b: 26 };
  const plotW = width - pad.l - pad.r;
  const plotH = height - pad.t - pad.b;
  const totalOk = buckets.reduce((n, b) => n + b.succeeded, 0);
  const totalBad = buckets.reduce((n, b) => n + b.failed, 0);
  const peak = Math.max(1, ...buckets.map((b) => b.succeeded + b.failed));
  const total = Math.max(1, totalOk + totalBad);
  const bw = plotW / Math.max(1, buckets.length);
  let cumulative = 0;
  const line = buckets
    .map((b, i) => {
      cumulative += b.succeeded + b.failed;
      return `${(pad.l + (i + 1) * bw).toFixed(1)},${(pad.t + plotH - (cumulative / total) * plotH).toFixed(1)}`;
    })
    .join(' ');
  return (
    <figure class="timeline">
      <svg class="chart" viewBox={`0 0 ${width} ${height}`} role="img" aria-label={`Completions over time: ${totalOk} succeeded, ${totalBad} failed, from ${time(timeline.from)} to ${time(timeline.to)}`} data-testid="timeline-chart">
        <line x1={pad.l} y1={pad.t + plotH} x2={pad.l + plotW} y2={pad.t + plotH} class="axis" />
        <text x={pad.l - 6} y={pad.t + 10} text-anchor="end" class="chart-value">
          {count(peak)}
        </text>
        <text x={pad.l - 6} y={pad.t + plotH} text-anchor="end" class="chart-value">
          0
        </text>
        <text x={pad.l + plotW + 6} y={pad.t + 10} class="chart-value" data-testid="timeline-total">
          {count(total)}
        </text>
        <text x={pad.l + plotW + 6} y={pad.t + plotH} class="chart-value">
          0
        </text>
        {buckets.map((b, i) => {
          const okH = (b.succeeded / peak) * plotH;
          const badH = (b.failed / peak) * plotH;
          const x = pad.l + i * bw + 1;
          return (
            <g key={b.at}>
              {b.succeeded > 0 && <rect x={x} y={pad.t + plotH - okH} width={Math.max(1, bw - 2)} height={okH} class="bar" />}
              {b.failed > 0 && <rect x={x} y={pad.t + plotH - okH - badH} width={Math.max(1, bw - 2)} height={badH} class="bar bar-bad" />}
            </g>
          );
        })}
        <polyline points={`${pad.l},${pad.t + plotH} ${line}`} class="cumulative" />
        <text x={pad.l} y={height - 6} class="chart-value">
          {time(timeline.from)}
        </text>
        <text x={pad.l + plotW} y={height - 6} text-anchor="end" class="chart-value">
          {time(timeline.to)}
        </text>
      </svg>
      <figcaption class="legend">
        bars per {span(timeline.bucketMs)} (left scale): <span class="key key-ok" aria-hidden="true" /> succeeded ({count(totalOk)}) <span class="key key-bad" aria-hidden="true" /> failed ({count(totalBad)}) · <span class="key key-line" aria-hidden="true" /> all completions so far (right scale)
      </figcaption>
    </figure>
  );
}
