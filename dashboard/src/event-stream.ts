/**
 * Reads the server's event stream (`GET /api/v1/events`, text/event-stream) with fetch and
 * a streaming reader instead of EventSource: EventSource cannot send the Authorization
 * header, and the token must never go into a URL. Reconnects with a growing delay.
 */
import { getToken, setToken } from './auth.ts';
import { parseSse } from './sse.ts';

import type { StreamEvent } from './sse.ts';

export type { StreamEvent };

/** Connection state, for the "live" indicator. */
export type StreamStatus = 'connecting' | 'live' | 'offline';

/** Options of a subscription. */
export interface StreamOptions {
  /** Query string filters: jobId, deviceId, types. */
  filter?: Record<string, string>;
  onEvent: (e: StreamEvent) => void;
  onStatus?: (s: StreamStatus) => void;
}

/** Subscribes until the returned function is called. */
export function subscribe(options: StreamOptions): () => void {
  const controller = new AbortController();
  let delay = 1000;
  const run = async () => {
    while (!controller.signal.aborted) {
      options.onStatus?.('connecting');
      try {
        const qs = new URLSearchParams(options.filter ?? {}).toString();
        const token = getToken();
        const res = await fetch(`/api/v1/events${qs ? `?${qs}` : ''}`, { headers: { authorization: `Bearer ${token ?? ''}`, accept: 'text/event-stream' }, signal: controller.signal });
        // the tab's token refused (rotated, removed, expired): signed out, as api.ts does on a
        // 401 (a page that reads only this stream would otherwise stay, stale, for ever); a
        // token replaced meanwhile from this tab: try again with it
        if (res.status === 401 && getToken() === token) {
          setToken(null);
          return options.onStatus?.('offline');
        }
        if (!res.body) return options.onStatus?.('offline');
        if (res.status === 401) continue;
        if (!res.ok) throw new Error(`HTTP ${res.status}`);
        options.onStatus?.('live');
        delay = 1000;
        const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
        let buffer = '';
        for (;;) {
          const { value, done } = await reader.read();
          if (done) break;
          const parsed = parseSse(buffer + value.replace(/\r\n/g, '\n'));
          buffer = parsed.rest;
          for (const e of parsed.events) options.onEvent(e);
        }
      } catch {
        if (controller.signal.aborted) return;
      }
      options.onStatus?.('offline');
      await new Promise((r) => setTimeout(r, delay));
      delay = Math.min(delay * 2, 15_000);
    }
  };
  void run();
  return () => controller.abort();
}
