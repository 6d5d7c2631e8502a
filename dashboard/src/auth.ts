/**
 * The operator token for this browser tab. Kept in sessionStorage: it survives a reload but
 * not the tab, and it never goes into a URL (URLs end up in logs and history).
 *
 * What the token may do is the server's answer (`GET /api/v1/whoami`), held in memory only: the
 * sign-in form gives it, and a page loaded with a token already stored asks for it as it loads,
 * beside the page's own requests; no operator control shows before the answer (app.tsx,
 * hooks.ts useReadOnly). A role kept in storage could disagree with the token (a viewer token
 * put there by hand showed every operator control).
 */
const KEY = 'updraft.operatorToken';
const listeners = new Set<() => void>();

/** Who the token is, as the server said (`GET /api/v1/whoami`): a named token has its name. */
export interface Identity {
  role: 'operator' | 'viewer';
  name?: string;
}

/** The server's answer for the token held; undefined until asked. */
let identity: Identity | undefined;

/** The token, or null when signed out. */
export function getToken(): string | null {
  return sessionStorage.getItem(KEY);
}

/** Who the token held is, or undefined while the server has not said. */
export function getIdentity(): Identity | undefined {
  return identity;
}

/** The name of the read-only viewer token the tab holds, or null (an operator's, or not known yet). */
export function getViewer(): string | null {
  return identity?.role === 'viewer' ? (identity.name ?? 'viewer') : null;
}

/**
 * Why the server signed this tab out (its 401's message), for the sign-in form to say; none
 * after a sign-out of one's own or a sign-in. A token that expired or was removed while a
 * page was open showed an empty form without a word, where the same token typed in was told
 * why (QA).
 */
let refusedWhy: string | undefined;

/** The server's reason for the last sign-out it caused, if that was the last sign-out. */
export function signOutReason(): string | undefined {
  return refusedWhy;
}

/**
 * Signs in (the token, and who the server said it is: undefined has it asked) or out (null);
 * notifies listeners.
 */
export function setToken(token: string | null, who?: Identity): void {
  hold(token, who, undefined);
}

/** Signs out because the server refused the tab's token (401), keeping its reason for the sign-in form. */
export function signOutRefused(why: string): void {
  hold(null, undefined, why);
}

/** Keeps `token` for the tab (null: none), who it is, and why the server signed it out; notifies listeners. */
function hold(token: string | null, who: Identity | undefined, why: string | undefined): void {
  if (token === null) sessionStorage.removeItem(KEY);
  else sessionStorage.setItem(KEY, token);
  identity = token === null ? undefined : who;
  refusedWhy = why;
  for (const l of listeners) l();
}

/** Records the server's answer for `token`, unless the tab holds another one by now. */
export function setIdentity(token: string, who: Identity): void {
  if (getToken() !== token) return;
  identity = who;
  for (const l of listeners) l();
}

/** Calls `listener` on sign-in and sign-out, and when the server said who the token is; returns the unsubscribe function. */
export function onAuthChange(listener: () => void): () => void {
  listeners.add(listener);
  return () => listeners.delete(listener);
}
