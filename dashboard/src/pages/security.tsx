/**
 * Keys and the operator token: the software signing key and its certificate from the offline
 * root (when it expires, so it is renewed before devices refuse updates), the URL signing
 * keys with rotation, and the replacement of the operator token. Replacing the token from
 * here shows the new one once, for the CLI and other tools, and signs this tab in with it.
 * Only a tab signed in with the shared token itself may: the answer is the new shared token,
 * the operators' MQTT password too, which a named operator token does not have (the server
 * refuses it; the page says so instead of offering the button).
 * And the named operator tokens and read-only viewer tokens (the operators' only), and the
 * device CA's state (read only: components/ca-state.tsx).
 */
import { useState } from 'preact/hooks';
import { api } from '../api.ts';
import { getIdentity, getToken, setToken } from '../auth.ts';
import { CaState } from '../components/ca-state.tsx';
import { ConfirmAction } from '../components/confirm-action.tsx';
import { ErrorNote, Loading } from '../components/error-note.tsx';
import { Field } from '../components/field.tsx';
import { StatusBadge } from '../components/status-badge.tsx';
import { TableScroll } from '../components/table-scroll.tsx';
import { certificateExpiry, dateTime } from '../format.ts';
import { useApi, useReadOnly } from '../hooks.ts';
import type { KeysView } from '../types.ts';

export function SecurityPage() {
  const keys = useApi<KeysView>('/keys');
  /** What the server said of a URL key rotation (on a shared store: copy the key ring to the other instances). */
  const [rotationWarning, setRotationWarning] = useState<string | undefined>();
  const readOnly = useReadOnly();
  /** Who this tab is: a named operator is not offered the replacement of the shared token. */
  const who = useApi<{ role: string; name?: string }>(readOnly ? null : '/whoami');
  /** The new shared operator token. */
  const [newToken, setNewToken] = useState<string | undefined>();
  const [copied, setCopied] = useState(false);
  const cert = keys.data?.signing.certificate;
  const exp = cert ? certificateExpiry(cert.expiresAt) : undefined;
  return (
    <>
      <h1>Security</h1>
      <ErrorNote error={keys.error} />
      {!keys.data ? (
        !keys.error && <Loading what="keys" />
      ) : (
        <>
          <section aria-labelledby="signing-h">
            <h2 id="signing-h">Software signing key</h2>
            <dl class="facts">
              <dt>Key id</dt>
              <dd>
                <code>{keys.data.signing.keyId}</code> ({keys.data.signing.algorithm}): signs every update command's manifest
              </dd>
              <dt>Certificate</dt>
              <dd data-testid="certificate">
                {cert && exp ? (
                  <>
                    serial {cert.serial} from root <code>{cert.rootKeyId}</code>; <span class={`note-${exp.tone}`}>{exp.text}</span>
                  </>
                ) : (
                  <>none: devices are provisioned with this key itself, and must be provisioned again if it is replaced (an offline root key avoids that: see the security docs)</>
                )}
              </dd>
              {keys.data.root && keys.data.root.rotations.length > 0 && (
                <>
                  <dt>Root rotations</dt>
                  <dd data-testid="root-rotations">
                    {[keys.data.root.rotations[0]!.previousRootKeyId, ...keys.data.root.rotations.map((r) => r.rootKeyId)].map((id, i) => (
                      <span key={id}>
                        {i > 0 && ' → '}
                        <code>{id}</code>
                      </span>
                    ))}
                    : every command carries them, and devices provisioned with an older root follow them (<code>reported.agent.keyId</code> names the root a device trusts)
                  </dd>
                </>
              )}
            </dl>
          </section>

          <CaState keys={keys.data} />

          <section aria-labelledby="url-h">
            <h2 id="url-h">URL signing keys</h2>
            <p class="muted">They sign download URLs and temporary credentials. A new key signs from now on; URLs signed by older keys stay valid until they expire.</p>
            <TableScroll>
              <table data-testid="url-keys">
                <caption class="sr-only">URL signing keys, active first</caption>
                <thead>
                  <tr>
                    <th scope="col">Key</th>
                    <th scope="col">Created</th>
                    <th scope="col">State</th>
                  </tr>
                </thead>
                <tbody>
                  {keys.data.url.map((k) => (
                    <tr key={k.kid}>
                      <td>
                        <code>{k.kid}</code>
                      </td>
                      <td>{dateTime(Date.parse(k.createdAt))}</td>
                      <td>
                        <StatusBadge status={k.active ? 'active' : k.activeFrom ? 'staged' : 'verifies'} />
                        {k.activeFrom && <span class="muted"> signs from {dateTime(Date.parse(k.activeFrom))}</span>}
                      </td>
                    </tr>
                  ))}
                </tbody>
              </table>
            </TableScroll>
            <ConfirmAction
              label="Rotate URL key"
              buttonClass="secondary"
              question="Put a new URL signing key in front? URLs already issued stay valid until they expire."
              confirm="Yes, rotate"
              keep="Keep the current key"
              run={async () => {
                const r = await api<{ warning?: string }>('POST', '/keys/url/rotate', {});
                setRotationWarning(r.warning);
                keys.reload();
              }}
            />
            {rotationWarning && (
              <p class="note-warn" role="status" data-testid="url-rotation-warning">
                {rotationWarning}
              </p>
            )}
          </section>

          <section aria-labelledby="token-h">
            <h2 id="token-h">Operator token</h2>
            <p class="muted">It opens the operator API and the operator's MQTT identity. Replace it if it may have leaked: the old one is refused at once, and what it opened is closed.</p>
            {who.data?.name !== undefined ? (
              <p role="note" data-testid="named-no-rotation">
                This tab is signed in with operator token {who.data.name}. The shared operator token is replaced by whoever holds it (sign in with it, or run updraft token rotate on the server), since the new one is shown to whoever replaces it and is also the operators' MQTT password, which named tokens do not have.
              </p>
            ) : (
              who.data && (
                <ConfirmAction
                  label="Replace the operator token"
                  question="Replace the operator token? Every tool using the current one (CLI, scripts, other tabs, Prometheus) is refused until given the new one."
                  confirm="Yes, replace it"
                  keep="Keep it"
                  run={async () => {
                    // the tab switches to the new one: the old one is refused at once
                    const held = getToken();
                    const r = await api<{ token: string }>('POST', '/operator-token/rotate');
                    if (getToken() === held) setToken(r.token, getIdentity()); // the same holder: the shared operator token
                    setCopied(false);
                    setNewToken(r.token);
                  }}
                />
              )
            )}
            {newToken && (
              <div class="new-token" role="status">
                <label for="new-token">New operator token (shown once; this tab already uses it):</label>
                <input id="new-token" readOnly value={newToken} onFocus={(e) => e.currentTarget.select()} />
                <button
                  type="button"
                  class="secondary"
                  onClick={() =>
                    void navigator.clipboard?.writeText(newToken).then(
                      () => setCopied(true),
                      () => setCopied(false),
                    )
                  }
                >
                  {copied ? 'Copied' : 'Copy'}
                </button>
              </div>
            )}
          </section>
          {!readOnly && <NamedTokens role="operator" />}
          {!readOnly && <NamedTokens role="viewer" />}
        </>
      )}
    </>
  );
}

/** What differs between the two kinds of named tokens on the page. */
const KINDS = {
  viewer: {
    title: 'Viewer tokens',
    one: 'viewer token',
    about: 'Read-only tokens for what only reads: Prometheus, a wall screen, a support desk. They change nothing and are no MQTT password. Each is shown once; removing one refuses it at once.',
    placeholder: 'prometheus',
  },
  operator: {
    title: 'Operator tokens',
    one: 'operator token',
    about: "One per person or tool that operates the fleet, with the operator token's rights over the API: the audit log names who did what, and someone who leaves loses access when their token is removed, without replacing the shared one. No MQTT password. Each is shown once; removing one refuses it at once.",
    placeholder: 'alice',
  },
} as const;

/** The named tokens of one kind: listed by name, added (the token shown once), removed. */
function NamedTokens({ role }: { role: keyof typeof KINDS }) {
  const kind = KINDS[role];
  const path = `/${role}-tokens`;
  const list = useApi<{ items: { name: string; createdAt: number; expiresAt?: number; lastUsedAt?: number; createdBy?: string }[] }>(path);
  const [name, setName] = useState('');
  const [error, setError] = useState<string | undefined>();
  const [added, setAdded] = useState<{ name: string; token: string } | undefined>();
  const [busy, setBusy] = useState(false);
  const add = async (e: Event) => {
    e.preventDefault();
    setBusy(true);
    setError(undefined);
    try {
      const r = await api<{ name: string; token: string }>('POST', path, { name: name.trim() });
      setAdded(r);
      setName('');
      list.reload();
    } catch (err) {
      setError((err as Error).message);
    } finally {
      setBusy(false);
    }
  };
  const capital = kind.one[0]!.toUpperCase() + kind.one.slice(1);
  return (
    <section aria-labelledby={`${role}-h`}>
      <h2 id={`${role}-h`}>{kind.title}</h2>
      <p class="muted">{kind.about}</p>
      <ErrorNote error={list.error} />
      {list.data && list.data.items.length > 0 && (
        <TableScroll>
          <table data-testid={`${role}-tokens`}>
            <caption class="sr-only">{kind.title} by name</caption>
            <thead>
              <tr>
                <th scope="col">Name</th>
                <th scope="col">Added</th>
                <th scope="col">Last used</th>
                <th scope="col">Expires</th>
                <th scope="col">
                  <span class="sr-only">Actions</span>
                </th>
              </tr>
            </thead>
            <tbody>
              {list.data.items.map((t) => (
                <tr key={t.name}>
                  <td>{t.name}</td>
                  <td>
                    {dateTime(t.createdAt)}
                    {t.createdBy !== undefined && t.createdBy !== 'operator' && <span class="muted"> by {t.createdBy.replace(/^operator /, '')}</span>}
                  </td>
                  <td>{t.lastUsedAt === undefined ? 'never' : dateTime(t.lastUsedAt)}</td>
                  <td>{t.expiresAt === undefined ? 'never' : t.expiresAt <= Date.now() ? <StatusBadge status="expired" /> : dateTime(t.expiresAt)}</td>
                  <td>
                    <ConfirmAction
                      label="Remove"
                      name={`Remove ${kind.one} ${t.name}`}
                      buttonClass="secondary"
                      question={`Remove the ${kind.one} ${t.name}? What uses it is refused from now on.`}
                      confirm={`Yes, remove ${t.name}`}
                      keep="Keep it"
                      run={async () => {
                        await api('DELETE', `${path}/${encodeURIComponent(t.name)}`);
                        list.reload();
                      }}
                    />
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
        </TableScroll>
      )}
      <form class="inline-form" onSubmit={add} noValidate>
        <Field id={`${role}-name`} label={`Name of a new ${kind.one}`} error={error}>
          <input id={`${role}-name`} value={name} placeholder={kind.placeholder} onInput={(e) => setName(e.currentTarget.value)} aria-invalid={error ? 'true' : undefined} aria-describedby={error ? `${role}-name-error` : undefined} />
        </Field>
        <button type="submit" disabled={busy || name.trim() === ''}>
          Add {kind.one}
        </button>
      </form>
      {added && (
        <div class="new-token" role="status">
          <label for={`new-${role}-token`}>
            {capital} {added.name} (shown once; the server keeps only its hash):
          </label>
          <input id={`new-${role}-token`} readOnly value={added.token} onFocus={(e) => e.currentTarget.select()} />
        </div>
      )}
    </section>
  );
}
