import type { ComponentChildren } from 'preact';

/** A form field: label, control, and the error for it right below. */
export function Field({ id, label, error, help, children }: { id: string; label: string; error?: string | undefined; help?: string; children: ComponentChildren }) {
  return (
    <div class={`field${error ? ' invalid' : ''}`}>
      <label for={id}>{label}</label>
      {children}
      {help && (
        <p id={`${id}-help`} class="help">
          {help}
        </p>
      )}
      {error && (
        <p id={`${id}-error`} class="field-error" role="alert">
          {error}
        </p>
      )}
    </div>
  );
}
