/**
 * `GET /api/v1/health/findings`: the fleet-level findings of `updraft doctor` (health/findings.ts)
 * computed on the server, for the dashboard's Health page: the signing key, staged URL keys, the
 * instance's metrics (load, CA and TLS expiry, webhooks, artifact storage, the leader), the
 * devices fleet queries select, counted over the whole fleet, and rollouts waiting. What depends
 * on where a client stands (reachable, its token, its clock) is doctor's only.
 *
 * One computation at a time, kept KEPT_MS after it ended, or ten times as long as it took (util/shared-answers.ts): it reads every
 * device and its shadow, so open dashboards share one read rather than each making its own. Any
 * token that reads the API reads it (viewer tokens too: http-server.ts viewerMay).
 */
import { deviceChecks, keyFindings, metricFindings, rolloutFindings, type Finding, type KeyFacts } from '../health/findings.ts';
import { selectForChecks } from '../health/fleet-scan.ts';
import type { StateStore } from '../store/state-store.ts';
import { SharedAnswers } from '../util/shared-answers.ts';
import type { MetricsSource } from './fleet-routes.ts';
import { sendJson } from './respond.ts';
import type { Router } from './router.ts';

/** How long one computation of the findings is answered from (ms). */
export const KEPT_MS = 30_000;

/** The answer. */
export interface HealthFindings {
  /** When the findings were computed (ms since the epoch): at most KEPT_MS old (or ten times one computation's length, when longer), plus one computation's length. */
  generatedAt: number;
  /** How long an answer is kept, in seconds: KEPT_MS's, or ten times the last computation's length when longer. */
  keptSeconds: number;
  /** Devices read to count the device findings. */
  scanned: number;
  findings: Finding[];
}

/** What the route needs. */
export interface HealthRouteDeps {
  store: StateStore;
  metrics: MetricsSource;
  keys: () => Promise<KeyFacts>;
  /** KEPT_MS unless said (tests). */
  keptMs?: number;
  now?: () => number;
}

/** Computes the findings once: keys, metrics, one read of the fleet for every device check, the paused rollouts. */
export async function computeFindings(deps: Pick<HealthRouteDeps, 'store' | 'metrics' | 'keys'>, now: number, keptMs = KEPT_MS): Promise<HealthFindings> {
  const keys = await deps.keys();
  const m = deps.metrics();
  const checks = deviceChecks(keys, m.tls, now);
  const { selected, scanned } = await selectForChecks(deps.store, checks);
  const devices = checks.map((c, i) => c.finding(selected[i]!)).filter((f): f is Finding => f !== undefined);
  const paused = await deps.store.listJobs({ status: ['PAUSED'], limit: 100, omitSpec: true });
  return { generatedAt: now, keptSeconds: keptMs / 1000, scanned, findings: [...keyFindings(keys, now), ...metricFindings(m, now), ...devices, ...rolloutFindings(paused.items)] };
}

/** Adds `GET /api/v1/health/findings`. */
export function addHealthRoutes(router: Router, deps: HealthRouteDeps): void {
  const now = deps.now ?? Date.now;
  const keptMs = deps.keptMs ?? KEPT_MS;
  // one key: the findings are the fleet's, whoever asks. Kept keptMs after it ended, or ten
  // times as long as it took (as the overview: fleet-overview.ts): a scan of 100,000 devices
  // takes some 3.5 s, and one open tab asked it every 33 s, a tenth of the server's thread
  // (review of 2026-12-07); the stamp is the time it is kept until
  let tookMs = 0;
  const keepFor = () => Math.max(keptMs, 10 * tookMs);
  const compute = async () => {
    const started = now();
    try {
      return await computeFindings(deps, started, keptMs);
    } finally {
      tookMs = Math.max(0, now() - started);
    }
  };
  const kept = new SharedAnswers<'findings', HealthFindings, number>({ max: 1, shareRunning: true, stampOnEnd: () => now() + keepFor(), fresh: (until, at) => at < until });
  router.add('GET', '/api/v1/health/findings', async ({ res }) => {
    const answer = await kept.get('findings', now(), compute);
    sendJson(res, 200, { ...answer, keptSeconds: Math.round(keepFor() / 1000) });
  });
}
