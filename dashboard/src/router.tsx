/**
 * A tiny history-API router: paths like /jobs/<id> are real URLs (the server answers every
 * such path with index.html), so links can be opened in a new tab, bookmarked and shared.
 */
import type { ComponentChildren } from 'preact';
import { useEffect, useState } from 'preact/hooks';

const listeners = new Set<() => void>();

/** Goes to `to` (path and query) without reloading. */
export function navigate(to: string, replace = false): void {
  if (to === location.pathname + location.search) return;
  if (replace) history.replaceState(null, '', to);
  else history.pushState(null, '', to);
  for (const l of listeners) l();
}

window.addEventListener('popstate', () => {
  for (const l of listeners) l();
});

/** The current location; re-renders the caller when it changes. */
export function useLocation(): { path: string; query: URLSearchParams } {
  const [, setTick] = useState(0);
  useEffect(() => {
    const l = () => setTick((n) => n + 1);
    listeners.add(l);
    return () => void listeners.delete(l);
  }, []);
  return { path: location.pathname, query: new URLSearchParams(location.search) };
}

/**
 * Matches `pattern` (segments starting with `:` capture) against `path`. A captured segment
 * that is no valid percent-encoding (`/devices/%`) matches nothing: the page is not found
 * (decodeURIComponent would throw, and an uncaught error blanks the app).
 */
export function match(pattern: string, path: string): Record<string, string> | undefined {
  const p = pattern.split('/').filter(Boolean);
  const s = path.split('/').filter(Boolean);
  if (p.length !== s.length) return undefined;
  const params: Record<string, string> = {};
  for (let i = 0; i < p.length; i++) {
    if (p[i]!.startsWith(':')) {
      const value = decoded(s[i]!);
      if (value === undefined) return undefined;
      params[p[i]!.slice(1)] = value;
    } else if (p[i] !== s[i]) return undefined;
  }
  return params;
}

/** `segment` percent-decoded, or undefined when it is malformed (a `%` not followed by two hex digits, bytes that are no UTF-8). */
function decoded(segment: string): string | undefined {
  try {
    return decodeURIComponent(segment);
  } catch {
    return undefined;
  }
}

/** An anchor that navigates in place (plain clicks only: ctrl/middle click open a tab as usual). */
export function Link(props: { href: string; children: ComponentChildren; class?: string; title?: string; 'aria-label'?: string; 'aria-current'?: 'page' | undefined }) {
  const { href, children, ...rest } = props;
  const onClick = (e: MouseEvent) => {
    if (e.defaultPrevented || e.button !== 0 || e.metaKey || e.ctrlKey || e.shiftKey || e.altKey) return;
    e.preventDefault();
    navigate(href);
  };
  return (
    <a href={href} onClick={onClick} {...rest}>
      {children}
    </a>
  );
}
