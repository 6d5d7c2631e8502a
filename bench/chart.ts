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
  const maxU = Math.max(1, ...points.map((p) => p.updatesPerS)) * 1.15;
  const maxL = Math.max(1, ...points.filter((p) => Number.isFinite(p.p99Ms)).map((p) => p.p99Ms)) * 1.15;
  const bw = plotW / Math.max(1, points.length);
  const x = (i: number) => pad.l + bw * i + bw / 2;
  const yU = (v: number) => pad.t + plotH - (v / maxU) * plotH;
  const yL = (v: number) => pad.t + plotH - (v / maxL) * plotH;
  const bars = points
    .map((p, i) => `<rect x="${x(i) - bw * 0.3}" y="${yU(p.updatesPerS)}" width="${bw * 0.6}" height="${pad.t + plotH - yU(p.updatesPerS)}" fill="#4c78a8"/>` +
      `<text x="${x(i)}" y="${yU(p.updatesPerS) - 6}" text-anchor="middle" font-size="12">${Math.round(p.updatesPerS)}/s</text>` +
      `<text x="${x(i)}" y="${H - pad.b + 20}" text-anchor="middle" font-size="12">${p.devices.toLocaleString('en')}</text>`)
    .join('');
  const line = points.filter((p) => Number.isFinite(p.p99Ms)).map((p) => `${x(points.indexOf(p))},${yL(p.p99Ms)}`).join(' ');
  const dots = points
    .filter((p) => Number.isFinite(p.p99Ms))
    .map((p) => `<circle cx="${x(points.indexOf(p))}" cy="${yL(p.p99Ms)}" r="4" fill="#e45756"/><text x="${x(points.indexOf(p)) + 8}" y="${yL(p.p99Ms) + 4}" font-size="11" fill="#e45756">${Math.round(p.p99Ms)} ms</text>`)
    .join('');
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="sans-serif">
<rect width="${W}" height="${H}" fill="white"/>
<text x="${W / 2}" y="22" text-anchor="middle" font-size="15">${title}</text>
<line x1="${pad.l}" y1="${pad.t + plotH}" x2="${pad.l + plotW}" y2="${pad.t + plotH}" stroke="#333"/>
<line x1="${pad.l}" y1="${pad.t}" x2="${pad.l}" y2="${pad.t + plotH}" stroke="#333"/>
<text x="${pad.l - 10}" y="${pad.t + plotH / 2}" text-anchor="middle" font-size="12" transform="rotate(-90 ${pad.l - 40} ${pad.t + plotH / 2})" fill="#4c78a8">device updates per second</text>
<text x="${W - 20}" y="${pad.t + plotH / 2}" text-anchor="middle" font-size="12" transform="rotate(90 ${W - 20} ${pad.t + plotH / 2})" fill="#e45756">p99 latency, desired to accepted</text>
<text x="${pad.l + plotW / 2}" y="${H - 10}" text-anchor="middle" font-size="12">connected devices updated at once</text>
${bars}
<polyline points="${line}" fill="none" stroke="#e45756" stroke-width="2"/>
${dots}
</svg>
`;
}
