/**
 * An instance's live figures, for `GET /api/v1/metrics`: as JSON (the benchmark, the CLI, a
 * person with curl) or in Prometheus's text exposition format (version 0.0.4) when the
 * request asks for text, as Prometheus's scraper does in its `Accept` header. Counters only
 * grow from the process's start; a scraper turns them into rates.
 */
import type { EventLoopFigures } from '../server/event-loop-monitor.ts';
import type { DownloadStats } from './download-route.ts';

/** The figures of one instance. */
export interface InstanceMetrics {
  /**
   * `refusedConnections`: every connection the embedded broker refused (admission limits and
   * the open-file limit); `refusedAtFileLimit`: those of them closed at the open-file limit,
   * which call for a higher `ulimit -n`, where admission refusals are the limits at work.
   */
  mqtt: { published: number; connectedClients: number; onlineDevices: number; refusedConnections: number; refusedAtFileLimit: number };
  shadow: { requests: number; rejections: Record<string, number> };
  downloads: DownloadStats;
  /**
   * Where this instance keeps its state (the embedded SQLite file, or a PostgreSQL database
   * other instances may share) and artifact bytes (its own directory, or S3): PostgreSQL with
   * a local directory serves only the builds added through this instance (`updraft doctor` warns).
   */
  storage: { store: 'embedded' | 'postgres'; artifacts: 'local' | 's3' };
  /**
   * `leader`: whether this instance leads rollouts now (holds the rollouts lease: it sends the
   * commands, times executions out, advances waves; the others follow). Alone on its store it
   * always does. Absent from servers before it.
   */
  rollouts?: { leader: boolean };
  /**
   * The operator API: changes asked (any method but GET and HEAD, but for a job's dry run;
   * whatever the answer), calls refused for their token, and connections to the HTTP listener
   * (API, downloads, dashboard) refused at the process's open-file limit.
   */
  api: { changes: number; refusedTokens: number; refusedConnections: number };
  /** Rollout notifications (webhook.url): delivered, failed for good (refused, redirected: a redirect is not followed, or every attempt failed), dropped from a full queue, waiting in the store (as the sender last counted; 0 on the others); null without a webhook. */
  webhook: { delivered: number; failed: number; dropped: number; waiting: number } | null;
  /**
   * The events this instance sends the other instances over the external broker
   * (cluster/event-relay.ts) and lost: `dropped`, events made while the broker could not be
   * reached; `undeliverable`, those the broker would not take (an event too large for its
   * packet limit, and the events of each batch message it closed the connection on three times in a row).
   * The others see those changes only when they next read the store. Null without --mqtt-url.
   */
  eventRelay: { dropped: number; undeliverable: number } | null;
  /** The software signing key's certificate from the offline root: its expiry (seconds since the epoch) and serial, null without one. */
  signing: { certificateExpiresAt: number | null; certificateSerial: number | null };
  /**
   * Expiries (seconds since the epoch) of Updraft's CA, of the previous CA a rollover left (null
   * without one; absent from servers before it) and of the server certificates the MQTTS and
   * HTTPS listeners serve (null: not served by this instance); the server renews those its CA
   * issued (docs/security.md). `devicesMovedOffPreviousCa`: devices this instance renewed from
   * a previous-CA certificate onto the current CA since it started (absent from servers before it).
   */
  tls: { caExpiresAt: number; previousCaExpiresAt?: number | null; devicesMovedOffPreviousCa?: number; mqttCertificateExpiresAt: number | null; httpCertificateExpiresAt: number | null };
  /** `databaseClockOffsetMs`: how far the shared database's clock is ahead of this instance's (null without one: cluster/cluster-clock.ts). */
  process: {
    rssBytes: number;
    /**
     * The V8 heap: in use (garbage not yet collected included) and reserved, and memory held
     * outside it (Buffers: downloads, CRLs, MQTT packets). RSS alone cannot tell a leak from
     * V8 keeping spare heap (a soak's RSS rose and fell 200-570 MB while the live heap stayed
     * at 102 MB): a leak is a rising floor of heapUsedBytes.
     */
    heapUsedBytes: number;
    heapTotalBytes: number;
    externalBytes: number;
    uptimeSeconds: number;
    databaseClockOffsetMs: number | null;
  };
  eventLoop: EventLoopFigures;
}

/** How an Accept header rates one of the answer's formats: its q, and how specific the range that gave it was. */
interface Rating {
  q: number;
  /** 2 type/subtype, 1 type/*, 0 star/star, -1 no range matched. */
  specificity: number;
  /** Position of that range in the header, for a tie. */
  index: number;
}

/**
 * How `ranges` rate a format of the given types: RFC 9110 §12.5.1, the most specific range
 * that matches gives the q (a type's own range over `type/*` over `* /*`), the best of the
 * format's types counts; q=0 is "not acceptable".
 */
function rate(ranges: { type: string; q: number }[], types: string[]): Rating {
  let best: Rating = { q: 0, specificity: -1, index: Infinity };
  for (const t of types) {
    let found: Rating = { q: 0, specificity: -1, index: Infinity };
    ranges.forEach((r, index) => {
      const specificity = r.type === t ? 2 : r.type === `${t.split('/')[0]}/*` ? 1 : r.type === '*/*' ? 0 : -1;
      if (specificity > found.specificity) found = { q: r.q, specificity, index };
    });
    if (found.q > best.q || (found.q === best.q && found.specificity > best.specificity)) best = found;
  }
  return best;
}

/**
 * True when the request prefers the text format (Prometheus, OpenMetrics) to JSON, by the
 * Accept header's q weights (`application/json;q=1, text/plain;q=0.1` gets JSON); at equal
 * weights the format named more specifically, then the one named first; JSON when neither is
 * acceptable or the header says nothing (curl, fetch: star/star).
 */
export function wantsPrometheusText(accept: string | undefined): boolean {
  if (!accept) return false;
  const ranges = accept.split(',').map((part) => {
    const [type = '', ...params] = part.split(';').map((p) => p.trim());
    const qParam = params.find((p) => /^q\s*=/i.test(p));
    const q = qParam === undefined ? 1 : Number(qParam.slice(qParam.indexOf('=') + 1).trim());
    // a q that is no number in 0-1 (RFC 9110's qvalue) is taken as 1, as no q would be
    return { type: type.toLowerCase(), q: Number.isFinite(q) && q >= 0 && q <= 1 ? q : 1 };
  });
  const text = rate(ranges, ['text/plain', 'application/openmetrics-text']);
  const json = rate(ranges, ['application/json']);
  if (text.q === 0) return false;
  if (text.q !== json.q) return text.q > json.q;
  if (text.specificity !== json.specificity) return text.specificity > json.specificity;
  return text.index < json.index;
}

type Sample = [labels: string, value: number];

/** The figures in Prometheus's text exposition format 0.0.4. */
export function renderPrometheus(m: InstanceMetrics, nowSeconds = Date.now() / 1000): string {
  const lines: string[] = [];
  const family = (name: string, type: 'counter' | 'gauge', help: string, samples: Sample[]) => {
    lines.push(`# HELP ${name} ${help}`, `# TYPE ${name} ${type}`);
    for (const [labels, value] of samples) lines.push(`${name}${labels} ${Number.isFinite(value) ? value : 0}`);
  };
  const one = (value: number): Sample[] => [['', value]];
  family('updraft_mqtt_published_total', 'counter', 'MQTT PUBLISH packets the embedded broker routed (0 with an external broker).', one(m.mqtt.published));
  family('updraft_mqtt_connected_clients', 'gauge', 'Connections on the embedded broker (0 with an external broker).', one(m.mqtt.connectedClients));
  family('updraft_mqtt_refused_connections_total', 'counter', 'Connections the embedded broker refused: CONNECTs at an admission limit, and connections at the process\'s open-file limit (the log says which).', one(m.mqtt.refusedConnections));
  family('updraft_mqtt_refused_at_file_limit_total', 'counter', "Of the embedded broker's refused connections, those closed at the process's open-file limit (ulimit -n): raise it.", one(m.mqtt.refusedAtFileLimit));
  if (m.rollouts) family('updraft_rollouts_leader', 'gauge', 'Whether this instance leads rollouts (1) or follows another that does (0): exactly one instance of a cluster should say 1.', one(m.rollouts.leader ? 1 : 0));
  family('updraft_online_devices', 'gauge', 'Devices this instance sees online.', one(m.mqtt.onlineDevices));
  family('updraft_shadow_requests_total', 'counter', 'Shadow requests (update, get, delete) received over MQTT, on state/... or $aws/things/... topics.', one(m.shadow.requests));
  family(
    'updraft_shadow_rejections_total',
    'counter',
    'Shadow requests received over MQTT and answered on .../rejected, by code.',
    Object.entries(m.shadow.rejections)
      .sort(([a], [b]) => Number(a) - Number(b))
      .map(([code, n]) => [`{code="${code}"}`, n]),
  );
  family('updraft_downloads_total', 'counter', "Artifact downloads, by result: served (a 200 or 206 started), refused (403), unavailable (503: the bucket or the database could not be reached; the device tries again), or missing (503: the build is stored but its bytes are not in this instance's artifact storage; the log names it).", [
    ['{result="served"}', m.downloads.served],
    ['{result="refused"}', m.downloads.refused],
    ['{result="unavailable"}', m.downloads.unavailable],
    ['{result="missing"}', m.downloads.missing],
  ]);
  family('updraft_downloads_cut_total', 'counter', 'Served downloads that ended before their last byte (the device went away, and resumes with Range: a rise is flaky device networks), or were reset after it because their device was revoked.', one(m.downloads.cut));
  family('updraft_download_bytes_total', 'counter', 'Bytes of the downloads handed to the network whole (a range counts its length; one cut before its last byte counts nothing; one reset after it, its device revoked, is counted here and in updraft_downloads_cut_total).', one(m.downloads.bytes));
  family('updraft_api_changes_total', 'counter', 'Changes asked of the operator API (any method but GET and HEAD, but for a job\'s dry run), whatever the answer: each is in the log.', one(m.api.changes));
  family('updraft_http_refused_connections_total', 'counter', "Connections to the HTTP listener (API, downloads, dashboard) closed unserved because the process was at its open-file limit (ulimit -n): raise it.", one(m.api.refusedConnections));
  family('updraft_api_refused_tokens_total', 'counter', 'Operator API calls refused for a missing or wrong token (a rise: someone guessing, or a tool with an old token).', one(m.api.refusedTokens));
  if (m.webhook) {
    family('updraft_webhook_deliveries_total', 'counter', 'Rollout notifications by result: delivered, failed (refused or redirected by the receiver, or every attempt failed), dropped (the queue was full).', [
      ['{result="delivered"}', m.webhook.delivered],
      ['{result="failed"}', m.webhook.failed],
      ['{result="dropped"}', m.webhook.dropped],
    ]);
    family('updraft_webhook_waiting', 'gauge', 'Rollout notifications waiting in the store to be sent, as the sending instance last counted them (0 on the others): a rise is a receiver down or slow.', one(m.webhook.waiting));
  }
  if (m.eventRelay) {
    family('updraft_event_relay_dropped_total', 'counter', 'Events not sent to the other instances because the external MQTT broker could not be reached (their live views see those changes when they next read the store).', one(m.eventRelay.dropped));
    family('updraft_event_relay_undeliverable_total', 'counter', "Events the external MQTT broker would not take, dropped: one too large for its packet limit, and those of each batch message it closed the connection on (check its max_packet_size; the log says which).", one(m.eventRelay.undeliverable));
  }
  if (m.signing.certificateExpiresAt !== null) {
    // absent without a certificate: an alert on `time() > expiry - 30 days` then never fires for nothing
    family('updraft_signing_key_certificate_expiry_timestamp_seconds', 'gauge', "When the offline root's certificate of the software signing key expires: devices that trust the root refuse every update after it.", one(m.signing.certificateExpiresAt));
    family('updraft_signing_key_certificate_serial', 'gauge', "Serial of the installed certificate of the software signing key (every instance should send the same).", one(m.signing.certificateSerial ?? 0));
  }
  family('updraft_ca_expiry_timestamp_seconds', 'gauge', "When Updraft's CA (pki/ca.crt) expires: nothing it issued is valid past it; replace it before (docs/security.md).", one(m.tls.caExpiresAt));
  if (m.tls.previousCaExpiresAt != null) family('updraft_previous_ca_expiry_timestamp_seconds', 'gauge', "When the previous CA of a rollover (pki/previous-ca.crt) expires: until then devices' client certificates it issued are accepted and renewed onto the current CA (docs/security.md).", one(m.tls.previousCaExpiresAt));
  // a counter since start: summed over instances, and with the previous CA's expiry, how far a rollover has come
  if (m.tls.devicesMovedOffPreviousCa !== undefined) family('updraft_ca_rollover_devices_moved_total', 'counter', "Devices this instance renewed from a certificate of the previous CA (pki/previous-ca.crt) onto the current CA, over MQTT, since it started (docs/security.md, CA rollover).", one(m.tls.devicesMovedOffPreviousCa));
  if (m.tls.mqttCertificateExpiresAt !== null) family('updraft_mqtt_tls_certificate_expiry_timestamp_seconds', 'gauge', 'When the MQTTS listener\'s server certificate expires (one issued by Updraft\'s CA is renewed with a third of its life left).', one(m.tls.mqttCertificateExpiresAt));
  if (m.tls.httpCertificateExpiresAt !== null) family('updraft_http_tls_certificate_expiry_timestamp_seconds', 'gauge', 'When the HTTPS listener\'s server certificate expires (one issued by Updraft\'s CA is renewed with a third of its life left).', one(m.tls.httpCertificateExpiresAt));
  family('process_resident_memory_bytes', 'gauge', 'Resident memory of the process.', one(m.process.rssBytes));
  // the names Node's usual exporter (prom-client's default metrics) gives them, so dashboards made for it read them
  family('nodejs_heap_size_used_bytes', 'gauge', 'V8 heap in use, garbage not yet collected included: a leak is a rising floor.', one(m.process.heapUsedBytes));
  family('nodejs_heap_size_total_bytes', 'gauge', 'V8 heap reserved.', one(m.process.heapTotalBytes));
  family('nodejs_external_memory_bytes', 'gauge', 'Memory held outside the V8 heap by JavaScript objects (Buffers).', one(m.process.externalBytes));
  family('process_start_time_seconds', 'gauge', 'Start time of the process, seconds since the epoch.', one(Math.round(nowSeconds - m.process.uptimeSeconds)));
  if (m.process.databaseClockOffsetMs !== null) {
    family('updraft_database_clock_offset_seconds', 'gauge', "How far the shared database's clock is ahead of this instance's (negative: behind). Job times are kept by the database's; manifests, URLs and tokens expire by the instance's: alert past a few seconds (NTP).", one(m.process.databaseClockOffsetMs / 1000));
  }
  const loop = m.eventLoop;
  family('updraft_event_loop_active_seconds_total', 'counter', 'Time the JavaScript thread spent running code; its rate near 1 is a saturated instance.', one(loop.activeMs / 1000));
  family('updraft_event_loop_idle_seconds_total', 'counter', 'Time the JavaScript thread waited for work.', one(loop.idleMs / 1000));
  // three gauges, not one with a `quantile` label: OpenMetrics and Prometheus reserve that
  // label for summaries, whose _sum and _count a minute's percentiles do not have
  const delay = loop.lastMinute.delayMs;
  const late = 'How late a 10 ms timer fired over the last complete minute (how long ready work waited for the thread)';
  family('updraft_event_loop_delay_p50_seconds', 'gauge', `${late}: the median.`, one(delay.p50 / 1000));
  family('updraft_event_loop_delay_p99_seconds', 'gauge', `${late}: the 99th percentile.`, one(delay.p99 / 1000));
  family('updraft_event_loop_delay_max_seconds', 'gauge', `${late}: the longest.`, one(delay.max / 1000));
  return lines.join('\n') + '\n';
}
