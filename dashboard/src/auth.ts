/**
 * The operator token for this browser tab. Kept in sessionStorage: it survives a reload but
 * not the tab, and it never goes into a URL (URLs end up in logs and history).
 */
const KEY = 'updraft.operatorToken';
/** The viewer token's name when the tab signed in with a read-only one (`GET /api/v1/whoami`). */
const VIEWER = 'updraft.viewer';
const listeners = new Set<() => void>();

/** The token, or null when signed out. */
export function getToken(): string | null {
  return sessionStorage.getItem(KEY);
}

/** The name of the read-only viewer token the tab signed in with, or null (the operator's). */
export function getViewer(): string | null {
  return sessionStorage.getItem(VIEWER);
}

/** Signs in (token, and the viewer token's name for a read-only one) or out (null); notifies listeners. */
export function setToken(token: string | null, viewer: string | null = null): void {
  if (token === null) sessionStorage.removeItem(KEY);
  else sessionStorage.setItem(KEY, token);
  if (token === null || viewer === null) sessionStorage.removeItem(VIEWER);
  else sessionStorage.setItem(VIEWER, viewer);
  for (const l of listeners) l();
}

/** Calls `listener` on sign-in and sign-out; returns the unsubscribe function. */
export function onAuthChange(listener: () => void): () => void {
  listeners.add(listener);
  return () => listeners.delete(listener);
}
