/** Data hooks: load an API resource, and reload it (throttled) when live events arrive. */
import { useCallback, useEffect, useLayoutEffect, useRef, useState } from 'preact/hooks';
import { ApiError, get } from './api.ts';
import { getIdentity, onAuthChange } from './auth.ts';
import { subscribe, type StreamEvent, type StreamStatus } from './event-stream.ts';

/** A loaded resource. */
export interface Loaded<T> {
  data: T | undefined;
  error: Error | undefined;
  loading: boolean;
  /** Loads again (keeps showing the current data meanwhile). */
  reload: () => void;
}

/** GETs `path` (null: nothing) and again whenever `path` changes; `read` reads it (default: one GET). */
export function useApi<T>(path: string | null, read: (path: string, signal: AbortSignal) => Promise<T> = get): Loaded<T> {
  const [state, setState] = useState<{ data?: T; error?: Error; loading: boolean; path: string | null }>({ loading: path !== null, path });
  const [tick, setTick] = useState(0);
  useEffect(() => {
    if (path === null) return;
    const controller = new AbortController();
    setState((s) => ({ ...s, loading: true, ...(s.path !== path ? { data: undefined, error: undefined, path } : {}) }));
    read(path, controller.signal).then(
      (data) => setState({ data, loading: false, path }),
      (error: Error) => {
        if (error.name !== 'AbortError') setState((s) => ({ ...s, error, loading: false }));
      },
    );
    return () => controller.abort();
  }, [path, tick]);
  const reload = useCallback(() => setTick((n) => n + 1), []);
  return { data: state.path === path ? state.data : undefined, error: state.path === path ? state.error : undefined, loading: state.loading, reload };
}

/**
 * Calls `fn` at most once per `ms`: the first call at once, later ones folded into one call at
 * the end of the interval (a burst of thousands of events costs one reload).
 */
export function useThrottle(fn: () => void, ms: number): () => void {
  const ref = useRef({ fn, last: 0, timer: 0 as ReturnType<typeof setTimeout> | 0 });
  ref.current.fn = fn;
  useEffect(() => () => clearTimeout(ref.current.timer || undefined), []);
  return useCallback(() => {
    const r = ref.current;
    if (r.timer) return;
    const wait = r.last + ms - Date.now();
    const fire = () => {
      r.timer = 0;
      r.last = Date.now();
      r.fn();
    };
    if (wait <= 0) fire();
    else r.timer = setTimeout(fire, wait);
  }, [ms]);
}

/**
 * The state of each open stream, for the header's indicator. Only the streams of the pages
 * shown count: a page that reads none (Security) is not live, whatever the page
 * before it was.
 */
const streams = new Map<number, StreamStatus>();
let nextStream = 0;
const statusListeners = new Set<(s: StreamStatus | undefined) => void>();

/** undefined while no stream is open; else the worst of the open streams' states. */
function streamStatus(): StreamStatus | undefined {
  if (streams.size === 0) return undefined;
  const all = [...streams.values()];
  return all.includes('offline') ? 'offline' : all.includes('connecting') ? 'connecting' : 'live';
}

function publishStatus(): void {
  const s = streamStatus();
  for (const l of statusListeners) l(s);
}

/** The state of the current page's event stream (undefined: it reads none); re-renders on change. */
export function useStreamStatus(): StreamStatus | undefined {
  const [s, setS] = useState(streamStatus);
  useEffect(() => {
    statusListeners.add(setS);
    setS(streamStatus()); // a stream opened between the first render and now
    return () => void statusListeners.delete(setS);
  }, []);
  return s;
}

/**
 * Subscribes to the event stream with `filter` while mounted (null: none, e.g. while what the
 * page shows is not known to exist); `onEvent`, `onLive` (the stream connected) and `onStatus`
 * (every change of its state) may change freely.
 */
export function useEvents(filter: Record<string, string> | null, onEvent: (e: StreamEvent) => void, onLive?: () => void, onStatus?: (s: StreamStatus) => void): void {
  const handler = useRef({ onEvent, onLive, onStatus });
  handler.current = { onEvent, onLive, onStatus };
  const key = JSON.stringify(filter);
  // a layout effect: the new page's stream is counted before the browser paints, so the
  // indicator does not blink out between two pages that both read one
  useLayoutEffect(() => {
    if (filter === null) return;
    const id = nextStream++;
    streams.set(id, 'connecting');
    publishStatus();
    const stop = subscribe({
      filter,
      onEvent: (e) => handler.current.onEvent(e),
      onStatus: (s) => {
        if (!streams.has(id)) return; // ended: a late report of a closed stream
        streams.set(id, s);
        publishStatus();
        handler.current.onStatus?.(s);
        if (s === 'live') handler.current.onLive?.();
      },
    });
    return () => {
      streams.delete(id);
      stop();
      publishStatus();
    };
  }, [key]);
}

/**
 * Reloads each of `loaded` (throttled to once per `ms`) on every event matching `filter` (null:
 * no stream), and on each connection of the stream after its first (what changed while it was
 * down, or the page was in the back/forward cache, sent no event here). `reloadWhenLive`: also
 * on the first, for a page that opens its stream only after its first answer, so that what
 * changed in between is not missed.
 */
export function useLiveReload(filter: Record<string, string> | null, loaded: Loaded<unknown>[], ms = 1000, reloadWhenLive = false): void {
  const reload = useThrottle(() => {
    for (const l of loaded) l.reload();
  }, ms);
  const connected = useRef(false);
  useEvents(filter, reload, () => {
    if (reloadWhenLive || connected.current) reload();
    connected.current = true;
  });
}

/**
 * A list page's read of `path` (null: nothing), live. Its stream (events matching `filter`;
 * null: none, read at once) opens first and the read is sent once the stream has settled: live
 * (the server sends what changes from then on, so nothing changed between the read and the
 * subscription is missed) or failed (read anyway; the reconnection reads again). The opening
 * costs one read: reading at once and again when the stream went live read every list twice as
 * it opened. Read again, throttled to once per `ms`, on each event `wants` (default: all) and
 * on each later connection of the stream (what changed while it was down sent no event).
 * `read` reads it (default: one GET; `getAllPages` for a whole list).
 */
export function useLiveList<T>(path: string | null, filter: Record<string, string> | null, ms = 1000, wants?: (e: StreamEvent) => boolean, read?: (path: string, signal: AbortSignal) => Promise<T>): Loaded<T> {
  const [settled, setSettled] = useState(filter === null);
  const first = useRef(true);
  const reloadList = useRef<() => void>(() => {});
  const reload = useThrottle(() => reloadList.current(), ms);
  useEvents(
    filter,
    (e) => (wants === undefined || wants(e)) && reload(),
    undefined,
    (s) => {
      if (s === 'connecting') return;
      // the first settling sends the first read; later connections read again
      if (first.current) {
        first.current = false;
        setSettled(true);
      } else if (s === 'live') reload();
    },
  );
  const loaded = useApi<T>(settled || filter === null ? path : null, read);
  reloadList.current = loaded.reload;
  return loaded;
}

/**
 * Whether a page about one thing (a device, a job) opens its live stream, given its first read of
 * that thing: once read; or when the read got no answer (no server) or a server error, so that the
 * stream's reconnection, and its reload once live, bring the page back by itself. Never when the
 * server refused it (404: it does not exist).
 */
export function streamAfter(main: Loaded<unknown>): boolean {
  if (main.data !== undefined) return true;
  const e = main.error;
  return e !== undefined && !(e instanceof ApiError && e.status >= 400 && e.status < 500);
}

/** Reloads each of `loaded` every `ms` while mounted and the tab is in sight (what no event announces); once when it comes back in sight after a reload was skipped. */
export function usePoll(loaded: Loaded<unknown>[], ms: number): void {
  const ref = useRef(loaded);
  ref.current = loaded;
  useEffect(() => {
    // a tab out of sight asks nothing: a forgotten Health tab made the server read the whole
    // fleet every half minute (review of 2026-12-07); it reads again at once when seen
    let missed = false;
    const reload = () => {
      for (const l of ref.current) l.reload();
    };
    const timer = setInterval(() => {
      if (document.hidden) missed = true;
      else reload();
    }, ms);
    const seen = () => {
      if (document.hidden || !missed) return;
      missed = false;
      reload();
    };
    document.addEventListener('visibilitychange', seen);
    return () => {
      clearInterval(timer);
      document.removeEventListener('visibilitychange', seen);
    };
  }, [ms]);
}

/**
 * True unless the server said the tab's token is an operator's (`GET /api/v1/whoami`, asked as
 * the page loads: auth.ts): what would change something is not shown to a viewer token, nor
 * before the answer (app.tsx shows the page meanwhile; its controls come with the answer).
 */
export function useReadOnly(): boolean {
  const [operator, setOperator] = useState(getIdentity()?.role === 'operator');
  useEffect(() => {
    // read again as it subscribes: the server's answer may have come between the render and
    // this effect (pages render while /whoami is on its way), and its notice went by unheard
    setOperator(getIdentity()?.role === 'operator');
    return onAuthChange(() => setOperator(getIdentity()?.role === 'operator'));
  }, []);
  return !operator;
}
