/**
 * A destructive action confirmed in the page, never in a browser dialog: its button, then
 * the question with "Yes, …" and a way back; the server's refusal is shown under it, and the
 * button comes back so the operator can try again.
 */
import { useState } from 'preact/hooks';
import { useReadOnly } from '../hooks.ts';

export interface ConfirmActionProps {
  /** The button's text, and its accessible name when `name` is absent. */
  label: string;
  /** Accessible name when the text alone is ambiguous (several on one page). */
  name?: string;
  /** The question: what will happen. */
  question: string;
  /** The confirming button's text. */
  confirm: string;
  /** The button that goes back. */
  keep: string;
  /** Class of the first button: `danger` where the action is the page's main one, `secondary` in a table row. */
  buttonClass?: 'danger' | 'secondary';
  /** Runs the action; a rejection's message is shown. */
  run: () => Promise<void>;
}

export function ConfirmAction(p: ConfirmActionProps) {
  const readOnly = useReadOnly();
  const [confirming, setConfirming] = useState(false);
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<string | undefined>();
  const go = async () => {
    setBusy(true);
    setError(undefined);
    try {
      await p.run();
    } catch (err) {
      setError((err as Error).message);
    } finally {
      setConfirming(false);
      setBusy(false);
    }
  };
  if (readOnly) return null; // a viewer token changes nothing: no button that would be refused
  return (
    <>
      {!confirming ? (
        <button type="button" class={p.buttonClass ?? 'danger'} aria-label={p.name} disabled={busy} onClick={() => setConfirming(true)}>
          {p.label}
        </button>
      ) : (
        <span class="confirm" role="alert">
          {p.question}{' '}
          <button type="button" class="danger" disabled={busy} onClick={go}>
            {p.confirm}
          </button>{' '}
          <button type="button" class="secondary" onClick={() => setConfirming(false)}>
            {p.keep}
          </button>
        </span>
      )}
      {error && (
        <p class="error" role="alert">
          {error}
        </p>
      )}
    </>
  );
}
