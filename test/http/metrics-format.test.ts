/**
 * `GET /api/v1/metrics` in Prometheus's text format: which requests get it, and what it says
 * for given figures.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { renderPrometheus, wantsPrometheusText, type InstanceMetrics } from '../../src/http/metrics.ts';
import { startTestServer } from '../helpers/server.ts';

describe('metrics for Prometheus', () => {
  it('answers text to a client that prefers it, JSON otherwise', () => {
    // Prometheus 2.x and 3.x scrapers, and a person asking for text
    assert.equal(wantsPrometheusText('application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1'), true);
    assert.equal(wantsPrometheusText('text/plain;version=0.0.4;q=1,*/*;q=0.1'), true);
    assert.equal(wantsPrometheusText('text/plain'), true);
    // curl, fetch, the CLI, the bench, the dashboard: JSON as before
    assert.equal(wantsPrometheusText(undefined), false);
    assert.equal(wantsPrometheusText('*/*'), false);
    assert.equal(wantsPrometheusText('application/json'), false);
    assert.equal(wantsPrometheusText('application/json, text/plain, */*'), false);
  });

  it("weighs the Accept header's q values, q=0 being not acceptable", () => {
    assert.equal(wantsPrometheusText('application/json;q=1, text/plain;q=0.1'), false);
    assert.equal(wantsPrometheusText('text/plain;q=0.1, application/json'), false);
    assert.equal(wantsPrometheusText('application/json;q=0.5, text/plain'), true);
    assert.equal(wantsPrometheusText('text/plain;q=0, */*'), false);
    assert.equal(wantsPrometheusText('text/plain;q=0'), false);
    assert.equal(wantsPrometheusText('application/json;q=0, text/*'), true);
    assert.equal(wantsPrometheusText('application/json;q=0.2, text/*;q=0.3'), true);
    // a type's own range over a wildcard: text/* is q=1, text/plain itself is refused
    assert.equal(wantsPrometheusText('text/plain;q=0, text/*, application/json;q=0.5'), false);
    // equal weights: named over a wildcard, then the first named
    assert.equal(wantsPrometheusText('text/plain, */*'), true);
    assert.equal(wantsPrometheusText('text/plain;version=0.0.4;q=0.5, application/json;q=0.5'), true);
    assert.equal(wantsPrometheusText('TEXT/PLAIN; Q=0.9, application/json; q=0.8'), true);
  });

  it('a real server answers each Accept with the format it weighs highest', async () => {
    const ts = await startTestServer();
    try {
      const get = (accept: string) => fetch(`${ts.httpUrl}/api/v1/metrics`, { headers: { authorization: `Bearer ${ts.token}`, accept } });
      const json = await get('application/json;q=1, text/plain;q=0.1');
      assert.match(json.headers.get('content-type') ?? '', /^application\/json/);
      assert.equal(typeof ((await json.json()) as { eventLoop?: unknown }).eventLoop, 'object');
      const text = await get('application/json;q=0.2, text/plain;version=0.0.4;q=0.5');
      assert.match(text.headers.get('content-type') ?? '', /^text\/plain/);
      const body = await text.text();
      assert.match(body, /^# TYPE updraft_event_loop_active_seconds_total counter$/m);
      assert.match(body, /^updraft_event_loop_delay_p99_seconds \d/m);
      assert.doesNotMatch(body, /quantile=/);
    } finally {
      await ts.close();
    }
  });

  it('writes each figure as a typed family, rejections by code, times in seconds', () => {
    const m: InstanceMetrics = {
      mqtt: { published: 1234, connectedClients: 7, onlineDevices: 5, refusedConnections: 2, refusedAtFileLimit: 1 },
      shadow: { requests: 900, rejections: { '413': 1, '400': 3 } },
      downloads: { served: 40, refused: 2, bytes: 4_000_000, cut: 3, unavailable: 5, missing: 6 },
      storage: { store: 'embedded', artifacts: 'local' },
      rollouts: { leader: true },
      api: { changes: 12, refusedTokens: 3, refusedConnections: 4 },
      webhook: null,
      eventRelay: null,
      signing: { certificateExpiresAt: null, certificateSerial: null },
      tls: { caExpiresAt: 2_000_000_000, mqttCertificateExpiresAt: null, httpCertificateExpiresAt: null },
      process: { rssBytes: 52_428_800, heapUsedBytes: 20_000_000, heapTotalBytes: 30_000_000, externalBytes: 4_000_000, uptimeSeconds: 100, databaseClockOffsetMs: null },
      eventLoop: {
        activeMs: 2500,
        idleMs: 97_500,
        utilization: 0.025,
        delayMs: { p50: 10, p99: 12, max: 80 },
        lastMinute: { seconds: 60, utilization: 0.02, delayMs: { p50: 10.1, p99: 11, max: 20 } },
      },
    };
    const text = renderPrometheus(m, 1_800_000_000);
    assert.ok(text.endsWith('\n'), 'the format ends with a line feed');
    const samples = text.split('\n').filter((l) => l !== '' && !l.startsWith('#'));
    assert.deepEqual(samples, [
      'updraft_mqtt_published_total 1234',
      'updraft_mqtt_connected_clients 7',
      'updraft_mqtt_refused_connections_total 2',
      'updraft_mqtt_refused_at_file_limit_total 1',
      'updraft_rollouts_leader 1',
      'updraft_online_devices 5',
      'updraft_shadow_requests_total 900',
      'updraft_shadow_rejections_total{code="400"} 3',
      'updraft_shadow_rejections_total{code="413"} 1',
      'updraft_downloads_total{result="served"} 40',
      'updraft_downloads_total{result="refused"} 2',
      'updraft_downloads_total{result="unavailable"} 5',
      'updraft_downloads_total{result="missing"} 6',
      'updraft_downloads_cut_total 3',
      'updraft_download_bytes_total 4000000',
      'updraft_api_changes_total 12',
      'updraft_http_refused_connections_total 4',
      'updraft_api_refused_tokens_total 3',
      'updraft_ca_expiry_timestamp_seconds 2000000000',
      'process_resident_memory_bytes 52428800',
      'nodejs_heap_size_used_bytes 20000000',
      'nodejs_heap_size_total_bytes 30000000',
      'nodejs_external_memory_bytes 4000000',
      'process_start_time_seconds 1799999900',
      'updraft_event_loop_active_seconds_total 2.5',
      'updraft_event_loop_idle_seconds_total 97.5',
      'updraft_event_loop_delay_p50_seconds 0.0101',
      'updraft_event_loop_delay_p99_seconds 0.011',
      'updraft_event_loop_delay_max_seconds 0.02',
    ]);
    // every family is announced once, with its type, before its samples
    const types = text.split('\n').filter((l) => l.startsWith('# TYPE '));
    assert.equal(types.length, 25, "one TYPE line per family");
    // `quantile` is a summary's label (OpenMetrics reserves it): no gauge carries it
    assert.doesNotMatch(text, /quantile=/);
    assert.ok(types.includes('# TYPE updraft_event_loop_delay_p99_seconds gauge'));
    assert.ok(types.includes('# TYPE updraft_shadow_rejections_total counter'));
    assert.ok(types.includes('# TYPE updraft_online_devices gauge'));
    assert.ok(text.indexOf('# TYPE updraft_downloads_total counter') < text.indexOf('updraft_downloads_total{result="served"}'));
    assert.ok(!text.includes('certificate'), 'no certificate figures without a certificate');
    assert.ok(!text.includes('webhook'), 'no webhook figures without a webhook');
    assert.ok(!text.includes('event_relay'), 'no event relay figures without an external broker');
  });

  it("gives the signing key certificate's expiry and serial, and the webhook's deliveries, when there are those", () => {
    const m: InstanceMetrics = {
      mqtt: { published: 0, connectedClients: 0, onlineDevices: 0, refusedConnections: 0, refusedAtFileLimit: 0 },
      shadow: { requests: 0, rejections: {} },
      downloads: { served: 0, refused: 0, bytes: 0, cut: 0, unavailable: 0, missing: 0 },
      storage: { store: 'postgres', artifacts: 's3' },
      api: { changes: 0, refusedTokens: 0, refusedConnections: 0 },
      webhook: { delivered: 7, failed: 1, dropped: 0, waiting: 3 },
      eventRelay: { dropped: 12, undeliverable: 2 },
      signing: { certificateExpiresAt: 1_830_000_000, certificateSerial: 3 },
      tls: { caExpiresAt: 2_000_000_000, mqttCertificateExpiresAt: 1_850_000_000, httpCertificateExpiresAt: 1_860_000_000 },
      process: { rssBytes: 1, heapUsedBytes: 1, heapTotalBytes: 1, externalBytes: 1, uptimeSeconds: 1, databaseClockOffsetMs: -1500 },
      eventLoop: { activeMs: 0, idleMs: 0, utilization: 0, delayMs: { p50: 0, p99: 0, max: 0 }, lastMinute: { seconds: 60, utilization: 0, delayMs: { p50: 0, p99: 0, max: 0 } } },
    };
    const lines = renderPrometheus(m, 1_800_000_000).split('\n');
    assert.ok(lines.includes('# TYPE updraft_signing_key_certificate_expiry_timestamp_seconds gauge'));
    assert.ok(lines.includes('updraft_ca_expiry_timestamp_seconds 2000000000'));
    assert.ok(lines.includes('updraft_mqtt_tls_certificate_expiry_timestamp_seconds 1850000000'));
    assert.ok(lines.includes('updraft_http_tls_certificate_expiry_timestamp_seconds 1860000000'));
    assert.ok(lines.includes('updraft_signing_key_certificate_expiry_timestamp_seconds 1830000000'));
    assert.ok(lines.includes('updraft_signing_key_certificate_serial 3'));
    assert.ok(lines.includes('updraft_webhook_deliveries_total{result="delivered"} 7'));
    assert.ok(lines.includes('updraft_webhook_waiting 3'));
    assert.ok(lines.includes('updraft_webhook_deliveries_total{result="failed"} 1'));
    assert.ok(lines.includes('# TYPE updraft_event_relay_dropped_total counter'));
    assert.ok(lines.includes('updraft_event_relay_dropped_total 12'), 'with an external broker: the events the relay lost');
    assert.ok(lines.includes('updraft_event_relay_undeliverable_total 2'));
    assert.ok(lines.includes('updraft_database_clock_offset_seconds -1.5'), 'on a shared database: its clock against this instance\'s');
  });
});
