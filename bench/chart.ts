/** A dependency-free SVG chart: updates/s (bars) and p99 latency (line) against fleet size. */

/** One point of the chart. */
export interface ChartPoint {
  devices: number;
  updatesPerS: number;
  p99Ms: number;
}

/** Renders the chart as an SVG document. */
export function renderChart(points: ChartPoint[], title: string): string {
  const W = 640;
  const H = 360;
  const pad = { l: 70, r: 70, t: 40, b: 50 };
  const plotW = W - pad.l - pad.r;
  const plotH = H - pad.t - pad.b;
  // the fleets with a p99 (a cycling rollout has none), each with its place on the axis
  const latencies = points.flatMap((p, i) => (Number.isFinite(p.p99Ms) ? [{ i, ms: p.p99Ms }] : []));
  const scaleU = axisScale(Math.max(1, ...points.map((p) => p.updatesPerS)) * 1.15);
  const scaleL = axisScale(Math.max(1, ...latencies.map((l) => l.ms)) * 1.15);
  const bw = plotW / Math.max(1, points.length);
  const x = (i: number) => pad.l + bw * i + bw / 2;
  const yU = (v: number) => pad.t + plotH - (v / scaleU.max) * plotH;
  const yL = (v: number) => pad.t + plotH - (v / scaleL.max) * plotH;
  const bars = points
    .map((p, i) => `<rect x="${x(i) - bw * 0.3}" y="${yU(p.updatesPerS)}" width="${bw * 0.6}" height="${pad.t + plotH - yU(p.updatesPerS)}" fill="#4c78a8"/>` +
      `<text x="${x(i)}" y="${pad.t + plotH - 10}" text-anchor="middle" font-size="13" font-weight="bold" fill="white">${Math.round(p.updatesPerS)}/s</text>` +
      `<text x="${x(i)}" y="${H - pad.b + 20}" text-anchor="middle" font-size="12">${p.devices.toLocaleString('en')}</text>`)
    .join('');
  // each axis's scale: updates/s on the left (with light grid lines), milliseconds on the right
  const ticks =
    scaleU.ticks.map((v) => `<line x1="${pad.l - 4}" y1="${yU(v)}" x2="${pad.l + plotW}" y2="${yU(v)}" stroke="${v === 0 ? '#333' : '#e6e6e6'}"/><text x="${pad.l - 7}" y="${yU(v) + 4}" text-anchor="end" font-size="11" fill="#4c78a8">${v.toLocaleString('en')}</text>`).join('') +
    (latencies.length > 0 ? scaleL.ticks : []).map((v) => `<line x1="${pad.l + plotW}" y1="${yL(v)}" x2="${pad.l + plotW + 4}" y2="${yL(v)}" stroke="#333"/><text x="${pad.l + plotW + 7}" y="${yL(v) + 4}" font-size="11" fill="#e45756">${v.toLocaleString('en')}</text>`).join('');
  const line = latencies.map((l) => `${x(l.i)},${yL(l.ms)}`).join(' ');
  const dots = latencies
    .map((l) => `<circle cx="${x(l.i)}" cy="${yL(l.ms)}" r="4" fill="#e45756"/><text x="${x(l.i)}" y="${yL(l.ms) - 9}" text-anchor="middle" font-size="11" fill="#e45756" stroke="white" stroke-width="3" paint-order="stroke">p99 ${Math.round(l.ms)} ms</text>`)
    .join('');
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="sans-serif">
<rect width="${W}" height="${H}" fill="white"/>
<text x="${W / 2}" y="22" text-anchor="middle" font-size="15">${title}</text>
<line x1="${pad.l}" y1="${pad.t + plotH}" x2="${pad.l + plotW}" y2="${pad.t + plotH}" stroke="#333"/>
${ticks}
<line x1="${pad.l}" y1="${pad.t}" x2="${pad.l}" y2="${pad.t + plotH}" stroke="#333"/>
<line x1="${pad.l + plotW}" y1="${pad.t}" x2="${pad.l + plotW}" y2="${pad.t + plotH}" stroke="#333"/>
<text x="${pad.l - 52}" y="${pad.t + plotH / 2}" text-anchor="middle" font-size="12" transform="rotate(-90 ${pad.l - 52} ${pad.t + plotH / 2})" fill="#4c78a8">device updates per second</text>
<text x="${W - 20}" y="${pad.t + plotH / 2}" text-anchor="middle" font-size="12" transform="rotate(90 ${W - 20} ${pad.t + plotH / 2})" fill="#e45756">p99 latency, desired to accepted</text>
<text x="${pad.l + plotW / 2}" y="${H - 10}" text-anchor="middle" font-size="12">connected devices updated at once</text>
${bars}
<polyline points="${line}" fill="none" stroke="#e45756" stroke-width="2"/>
${dots}
</svg>
`;
}

/**
 * An axis from 0 covering `top`: a round step (1, 2 or 5 times a power of ten) giving 4 to 8
 * intervals, the axis's top the first multiple of it at or above `top`, and the ticks.
 */
export function axisScale(top: number): { max: number; ticks: number[] } {
  const rough = top / 5;
  const power = 10 ** Math.floor(Math.log10(rough));
  const step = [1, 2, 5, 10].map((m) => m * power).find((s) => top / s <= 8)!;
  const max = Math.ceil(top / step) * step;
  const ticks: number[] = [];
  for (let v = 0; v <= max + step / 2; v += step) ticks.push(Math.round(v * 1e6) / 1e6);
  return { max, ticks };
}
