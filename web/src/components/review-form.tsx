// One deliberate act on an action (approve, reject, cancel, retry, roll
// back): a note or reason, and for DANGEROUS reviews a typed confirmation
// of the action type and target before the final button enables. The
// final button is never focused for the person: the form opens on its
// text box.
import { type FormEvent, useId, useState } from "react";

export interface Confirmation {
  /** What the person is asked to type, e.g. "the action type". */
  what: string;
  expected: string;
}

export interface ActFormProps {
  legend: string;
  /** "Note" (optional) or "Reason". */
  noteLabel: string;
  noteRequired: boolean;
  noteHint?: string;
  confirmations?: readonly Confirmation[];
  submitLabel: string;
  tone: "primary" | "danger";
  busy: boolean;
  onSubmit(note: string): void;
  onClose(): void;
}

export function ActForm(props: ActFormProps) {
  const id = useId();
  const [note, setNote] = useState("");
  const [typed, setTyped] = useState<string[]>(() => (props.confirmations ?? []).map(() => ""));
  const [problem, setProblem] = useState<string | undefined>(undefined);
  const confirmations = props.confirmations ?? [];
  const confirmed = confirmations.every((c, index) => (typed[index] ?? "").trim() === c.expected.trim());

  const submit = (event: FormEvent) => {
    event.preventDefault();
    if (props.busy || !confirmed) return;
    if (props.noteRequired && note.trim() === "") {
      setProblem(`${props.noteLabel} is required.`);
      return;
    }
    setProblem(undefined);
    props.onSubmit(note.trim());
  };

  return (
    <form className={`act-form act-${props.tone}`} onSubmit={submit} noValidate>
      <fieldset>
        <legend>{props.legend}</legend>
        <label htmlFor={`${id}-note`}>
          {props.noteLabel}
          {!props.noteRequired && <span className="muted"> (optional)</span>}
        </label>
        {props.noteHint && (
          <p id={`${id}-hint`} className="muted act-hint">
            {props.noteHint}
          </p>
        )}
        <textarea
          id={`${id}-note`}
          // biome-ignore lint/a11y/noAutofocus: the form opens on the person's click and replaces the button clicked, so focus must move into it: to its text box, never its final button
          autoFocus
          value={note}
          required={props.noteRequired}
          aria-invalid={problem ? true : undefined}
          aria-describedby={[props.noteHint && `${id}-hint`, problem && `${id}-problem`].filter(Boolean).join(" ") || undefined}
          onChange={(e) => setNote(e.target.value)}
        />
        {problem && (
          <p id={`${id}-problem`} className="error" role="alert">
            {problem}
          </p>
        )}
        {confirmations.length > 0 && (
          <div className="act-confirm">
            <p>
              <strong>This action is DANGEROUS.</strong> Type what it does and what it acts on, to show you have read them.
            </p>
            {confirmations.map((c, index) => {
              const value = typed[index] ?? "";
              const matches = value.trim() === c.expected.trim();
              return (
                <div key={c.what} className="act-confirm-field">
                  <label htmlFor={`${id}-confirm-${index}`}>Type {c.what} to confirm</label>
                  <span id={`${id}-expect-${index}`} className="muted">
                    expected: <code>{c.expected}</code>
                    {value !== "" && <span className={matches ? "act-match" : "error"}>{matches ? " ✓ matches" : " does not match yet"}</span>}
                  </span>
                  <input
                    id={`${id}-confirm-${index}`}
                    type="text"
                    autoComplete="off"
                    spellCheck={false}
                    value={value}
                    aria-describedby={`${id}-expect-${index}`}
                    onChange={(e) => setTyped((old) => old.map((v, i) => (i === index ? e.target.value : v)))}
                  />
                </div>
              );
            })}
          </div>
        )}
        <div className="act-buttons">
          <button type="submit" className={props.tone} disabled={props.busy || !confirmed} aria-describedby={!confirmed ? `${id}-why-disabled` : undefined}>
            {props.busy ? "Sending…" : props.submitLabel}
          </button>
          <button type="button" onClick={props.onClose} disabled={props.busy}>
            Back
          </button>
          {!confirmed && (
            <span id={`${id}-why-disabled`} className="muted">
              {confirmations.length > 1 ? "Enabled once both typed texts match." : "Enabled once the typed text matches."}
            </span>
          )}
        </div>
      </fieldset>
    </form>
  );
}
