/**
 * Reads the server's event stream (`GET /api/v1/events`, text/event-stream) with fetch and
 * a streaming reader instead of EventSource: EventSource cannot send the Authorization
 * header, and the token must never go into a URL. Reconnects with a growing delay.
 */
import { getToken, signOutRefused } from './auth.ts';
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

/**
 * Subscribes until the returned function is called. A page put in the back/forward cache
 * ('pagehide') closes its stream and opens it again when shown from there ('pageshow',
 * persisted), reporting 'connecting' then 'live' (hooks.ts reloads what the page shows): Chrome
 * keeps up to 6 connections per host, and each cached page's open stream held one, so the 7th
 * page load in a tab waited for ever for a connection (QA, 2026-12-08).
 */
export function subscribe(options: StreamOptions): () => void {
  let stopped = false;
  let hidden = false;
  let attempt: AbortController | undefined;
  let wake: (() => void) | undefined;
  let delay = 1000;
  /** Resolves after `ms` (undefined: never) or as soon as wake() is called. */
  const pause = (ms?: number) =>
    new Promise<void>((resolve) => {
      const timer = ms === undefined ? undefined : setTimeout(() => done(), ms);
      const done = () => {
        clearTimeout(timer);
        if (wake === done) wake = undefined;
        resolve();
      };
      wake = done;
    });
  const onHide = () => {
    hidden = true;
    attempt?.abort();
    options.onStatus?.('connecting');
  };
  const onShow = (e: PageTransitionEvent) => {
    if (!e.persisted || !hidden) return;
    hidden = false;
    delay = 1000;
    wake?.();
  };
  const run = async () => {
    while (!stopped) {
      if (hidden) {
        await pause();
        continue;
      }
      attempt = new AbortController();
      const signal = attempt.signal;
      options.onStatus?.('connecting');
      try {
        const qs = new URLSearchParams(options.filter ?? {}).toString();
        const token = getToken();
        const res = await fetch(`/api/v1/events${qs ? `?${qs}` : ''}`, { headers: { authorization: `Bearer ${token ?? ''}`, accept: 'text/event-stream' }, signal });
        // the tab's token refused (rotated, removed, expired): signed out, as api.ts does on a
        // 401 (a page that reads only this stream would otherwise stay, stale, for ever); a
        // token replaced meanwhile from this tab: try again with it
        if (res.status === 401 && getToken() === token) {
          const body = (await res.json().catch(() => ({}))) as { error?: { message?: string } };
          // the token may have been replaced from this tab while the answer was read: try again with it
          if (getToken() !== token) continue;
          signOutRefused(body.error?.message ?? `the server answered HTTP ${res.status}`);
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
        if (stopped) return;
      }
      // closed for the back/forward cache: opened again, at once, when shown from it
      if (signal.aborted) continue;
      options.onStatus?.('offline');
      await pause(delay);
      delay = Math.min(delay * 2, 15_000);
    }
  };
  const stop = () => {
    stopped = true;
    removeEventListener('pagehide', onHide);
    removeEventListener('pageshow', onShow);
    attempt?.abort();
    wake?.();
  };
  addEventListener('pagehide', onHide);
  addEventListener('pageshow', onShow);
  // a stream that ended by itself (signed out) is not opened again by a later pageshow
  void run().finally(stop);
  return stop;
}
