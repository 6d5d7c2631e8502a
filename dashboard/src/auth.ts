/**
 * The operator token for this browser tab. Kept in sessionStorage: it survives a reload but
 * not the tab, and it never goes into a URL (URLs end up in logs and history).
 */
const KEY = 'updraft.operatorToken';
const listeners = new Set<() => void>();

/** The token, or null when signed out. */
export function getToken(): string | null {
  return sessionStorage.getItem(KEY);
}

/** Signs in (token) or out (null); notifies listeners. */
export function setToken(token: string | null): void {
  if (token === null) sessionStorage.removeItem(KEY);
  else sessionStorage.setItem(KEY, token);
  for (const l of listeners) l();
}

/** Calls `listener` on sign-in and sign-out; returns the unsubscribe function. */
export function onAuthChange(listener: () => void): () => void {
  listeners.add(listener);
  return () => listeners.delete(listener);
}
