/**
 * Fleet provisioning and metrics routes: bulk registration (provisioning lines, the fleet
 * simulator) and the counters the benchmarks read.
 */
import { UpdraftError } from '../errors.ts';
import type { DeviceRegistration, DeviceRegistry } from '../registry/device-registry.ts';
import { renderPrometheus, wantsPrometheusText, type InstanceMetrics } from './metrics.ts';
import { readJson, sendJson } from './respond.ts';
import type { Router } from './router.ts';
import { refuseUnknownFields } from '../protocol/known-fields.ts';

/** Live counters of the running server. */
export type MetricsSource = () => InstanceMetrics;

/** Adds `POST /api/v1/devices/bulk` and `GET /api/v1/metrics`. */
export function addFleetRoutes(router: Router, deps: { registry: DeviceRegistry; metrics: MetricsSource }): void {
  router.add('POST', '/api/v1/devices/bulk', async ({ req, res, audit }) => {
    const body = await readJson(req, 16 << 20);
    refuseUnknownFields(body, ['devices']);
    if (!Array.isArray(body.devices)) throw new UpdraftError('BAD_REQUEST', 'devices must be an array of {deviceId, attributes?, tags?}');
    const results = await deps.registry.registerMany(body.devices as DeviceRegistration[]);
    audit.devices = results.length; // a count: a provisioning line registers 10,000 at once
    sendJson(res, 201, { devices: results });
  });

  // JSON, or Prometheus's text format for a client that prefers text (Prometheus's scraper does)
  router.add('GET', '/api/v1/metrics', async ({ req, res }) => {
    if (!wantsPrometheusText(req.headers.accept)) return sendJson(res, 200, deps.metrics());
    const body = renderPrometheus(deps.metrics());
    res.writeHead(200, { 'content-type': 'text/plain; version=0.0.4; charset=utf-8', 'content-length': Buffer.byteLength(body), vary: 'accept' });
    res.end(body);
  });
}
