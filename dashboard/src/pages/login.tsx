/**
 * Sign-in: the operator token (printed by the server on first start, kept in
 * data/operator-token), or a read-only viewer token. Checked against the API before it is
 * kept for the tab; a refusal shows the server's reason (wrong, or a named token expired), as
 * does a sign-out the server caused while a page was open (signOutReason).
 */
import { useState } from 'preact/hooks';
import { setToken, signOutReason } from '../auth.ts';

export function LoginPage() {
  const [token, setValue] = useState('');
  // signed out by the server (the token expired, was removed or replaced while a page was
  // open): said why, as a refused sign-in is
  const [error, setError] = useState<string | undefined>(() => {
    const why = signOutReason();
    return why === undefined ? undefined : `Signed out: the server refused this tab's token: ${why}. Sign in again with a token it takes.`;
  });
  const [busy, setBusy] = useState(false);
  const submit = async (e: Event) => {
    e.preventDefault();
    const t = token.trim();
    if (!t) return setError('Enter the operator token.');
    setBusy(true);
    setError(undefined);
    const res = await fetch('/api/v1/whoami', { headers: { authorization: `Bearer ${t}` } }).catch(() => undefined);
    setBusy(false);
    if (!res) return setError('The server cannot be reached; check that it runs.');
    if (res.status === 401) {
      // the server says why (an expired named token is told so, not that it is wrong)
      const body = (await res.json().catch(() => ({}))) as { error?: { message?: string } };
      const why = body.error?.message;
      return setError(`${why ? `The server refused that token: ${why}. ` : ''}It takes the operator token (in data/operator-token on the server), a named operator token or a viewer token.`);
    }
    if (!res.ok) return setError(`The server answered HTTP ${res.status}.`);
    const who = (await res.json().catch(() => ({}))) as { role?: string; name?: string };
    // anything but an operator's answer is read-only; a name is a named token's
    setToken(t, { role: who.role === 'operator' ? 'operator' : 'viewer', ...(typeof who.name === 'string' ? { name: who.name } : {}) });
  };
  return (
    <main id="main" class="login">
      <h1>Updraft</h1>
      <p class="muted">Over-the-air updates for your fleet.</p>
      <form onSubmit={submit} noValidate>
        <label for="token">Operator token</label>
        {/* autocomplete off: a password manager would keep the token beyond the tab */}
        <input id="token" name="token" type="password" autoComplete="off" value={token} onInput={(e) => setValue(e.currentTarget.value)} aria-invalid={error ? 'true' : undefined} aria-describedby={error ? 'token-error' : 'token-help'} autoFocus />
        <p id="token-help" class="help">
          The server prints it on first start; it is also in <code>data/operator-token</code>. A read-only viewer token (<code>updraft token viewer add</code>) signs in too, and changes nothing. It is kept only for this browser tab.
        </p>
        {error && (
          <p id="token-error" class="field-error" role="alert">
            {error}
          </p>
        )}
        <button type="submit" disabled={busy}>
          {busy ? 'Signing in…' : 'Sign in'}
        </button>
      </form>
    </main>
  );
}
