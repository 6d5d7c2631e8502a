/**
 * The fleet's version distribution: a horizontal bar per version, drawn as SVG by hand (a
 * chart library would outweigh the whole dashboard). The numbers are text in the chart and
 * in its accessible name, so nothing is told by bar length alone.
 */
import { count } from '../format.ts';
import type { FleetOverview } from '../types.ts';

const SHOWN = 8;
const ROW = 28;

export function VersionChart({ versions, unreported }: { versions: FleetOverview['versions']; unreported: number }) {
  const rows = versions.slice(0, SHOWN).map((v) => ({ label: `${v.name ?? '?'}@${v.version ?? '?'}`, n: v.devices }));
  const rest = versions.slice(SHOWN).reduce((n, v) => n + v.devices, 0);
  if (rest > 0) rows.push({ label: `${versions.length - SHOWN} other versions`, n: rest });
  if (unreported > 0) rows.push({ label: 'not reported', n: unreported });
  if (rows.length === 0) return <p class="muted">No device has reported a version yet.</p>;
  const max = Math.max(...rows.map((r) => r.n));
  const width = 560;
  const labelW = 170;
  const barMax = width - labelW - 70;
  const summary = rows.map((r) => `${r.label}: ${r.n}`).join(', ');
  return (
    <svg class="chart" viewBox={`0 0 ${width} ${rows.length * ROW + 4}`} role="img" aria-label={`Devices per version: ${summary}`} data-testid="version-chart">
      {rows.map((r, i) => {
        const w = max === 0 ? 0 : Math.max(2, (r.n / max) * barMax);
        const y = i * ROW + 4;
        return (
          <g key={r.label}>
            <text x={labelW - 8} y={y + 15} text-anchor="end" class="chart-label">
              {r.label}
            </text>
            <rect x={labelW} y={y} width={w} height={ROW - 8} rx="3" class={r.label === 'not reported' ? 'bar bar-muted' : 'bar'} />
            <text x={labelW + w + 6} y={y + 15} class="chart-value">
              {count(r.n)}
            </text>
          </g>
        );
      })}
    </svg>
  );
}
