/**
 * A destructive action confirmed in the page, never in a browser dialog: its button, then
 * the question with "Yes, …" and a way back; the server's refusal is shown under it, and the
 * button comes back so the operator can try again. The focus moves to "Yes, …" when the
 * question opens and back to the button when it closes; Escape closes it as the way back does.
 */
import { useEffect, useRef, useState } from 'preact/hooks';
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
  const trigger = useRef<HTMLButtonElement>(null);
  const yes = useRef<HTMLButtonElement>(null);
  // the button that had the focus is gone once the question opens or closes: the focus goes to
  // the question's "Yes", and back to the button (WAI-ARIA APG, dialog pattern: focus moves into
  // what opened and returns to what opened it), unless something else took it meanwhile
  const focusNext = useRef<'yes' | 'trigger' | undefined>(undefined);
  useEffect(() => {
    const to = focusNext.current === 'yes' ? yes.current : focusNext.current === 'trigger' ? trigger.current : null;
    focusNext.current = undefined;
    if (to && (document.activeElement === null || document.activeElement === document.body)) to.focus();
  }, [confirming]);
  const open = (on: boolean) => {
    focusNext.current = on ? 'yes' : 'trigger';
    setConfirming(on);
  };
  const go = async () => {
    setBusy(true);
    setError(undefined);
    try {
      await p.run();
    } catch (err) {
      setError((err as Error).message);
    } finally {
      open(false);
      setBusy(false);
    }
  };
  if (readOnly) return null; // a viewer token changes nothing: no button that would be refused
  return (
    <>
      {!confirming ? (
        <button ref={trigger} type="button" class={p.buttonClass ?? 'danger'} aria-label={p.name} disabled={busy} onClick={() => open(true)}>
          {p.label}
        </button>
      ) : (
        // Escape keeps it, as the way back does (WAI-ARIA APG, dialog pattern); not while the action runs
        <span
          class="confirm"
          role="alert"
          onKeyDown={(e) => {
            if (e.key !== 'Escape' || busy) return;
            e.stopPropagation(); // closes this question only, not a panel around it
            open(false);
          }}
        >
          {p.question}{' '}
          <button ref={yes} type="button" class="danger" disabled={busy} onClick={go}>
            {p.confirm}
          </button>{' '}
          <button type="button" class="secondary" onClick={() => open(false)}>
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
