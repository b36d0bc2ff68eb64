// The pauses in force, and for operators the way to lift each one. Lifting
// takes an optional reason, kept on the `coordinator_resumed` event.
import { useMutation, useQueryClient } from "@tanstack/react-query";
import { type FormEvent, useEffect, useId, useRef, useState } from "react";
import { type Pause, PauseKind, type PauseScope } from "../../../gen/actionq/v1/action_queue_service_pb.js";
import { api } from "../api.js";
import { PAUSE_KIND_NAMES } from "../format.js";
import { actorField, can, useMe } from "../identity.js";
import { refreshPauses } from "../live.js";
import { ErrorNotice, When } from "./badges.js";

/** "all claims", "action type redeploy_service", "project shop"… */
export function scopeText(scope: PauseScope | undefined): string {
  if (!scope) return "unknown scope";
  const kind = PAUSE_KIND_NAMES[scope.kind] ?? "unknown scope";
  return scope.value ? `${kind} ${scope.value}` : kind;
}

/** What a pause stops, in words for the person deciding whether to lift it. */
function effectText(scope: PauseScope | undefined): string {
  switch (scope?.kind) {
    case PauseKind.ALL:
      return "No action is claimed.";
    case PauseKind.ACTION_TYPE:
      return "Actions of this type are not claimed.";
    case PauseKind.PROJECT:
      return "Actions of this project are not claimed.";
    case PauseKind.AUTO_APPROVAL:
      return "Every new action waits for a human approval; claiming goes on.";
    default:
      return "";
  }
}

export function PausesTable({ pauses }: { pauses: Pause[] }) {
  const me = useMe();
  const operator = can(me, "operator");
  if (pauses.length === 0) return <p className="ops-calm">Nothing is paused: workers claim and the policy approves as usual.</p>;
  return (
    <div className="ops-table-wrap">
      <table className="ops-table ops-pauses">
        <caption className="visually-hidden">Pauses in force</caption>
        <thead>
          <tr>
            <th scope="col">Scope</th>
            <th scope="col">Paused by</th>
            <th scope="col">Reason</th>
            <th scope="col">Since</th>
            {operator && <th scope="col">Resume</th>}
          </tr>
        </thead>
        <tbody>
          {pauses.map((pause) => (
            <tr key={scopeText(pause.scope)}>
              <th scope="row">
                <strong>{scopeText(pause.scope)}</strong>
                <div className="muted ops-small">{effectText(pause.scope)}</div>
              </th>
              <td>{pause.pausedBy}</td>
              <td className="ops-reason">{pause.reason}</td>
              <td className="ops-nowrap">
                <When at={pause.createTime} />
              </td>
              {operator && (
                <td>
                  <ResumeControl pause={pause} />
                </td>
              )}
            </tr>
          ))}
        </tbody>
      </table>
    </div>
  );
}

function ResumeControl({ pause }: { pause: Pause }) {
  const me = useMe();
  const queryClient = useQueryClient();
  const [open, setOpen] = useState(false);
  const [reason, setReason] = useState("");
  const input = useRef<HTMLInputElement>(null);
  const scope = scopeText(pause.scope);
  const id = useId();
  const resume = useMutation({
    mutationFn: () => api.resumeClaims({ scope: pause.scope, actor: actorField(me), reason: reason.trim() }),
    onSuccess: () => refreshPauses(queryClient),
  });
  useEffect(() => {
    if (open) input.current?.focus();
  }, [open]);

  if (!open) {
    return (
      <button type="button" onClick={() => setOpen(true)} aria-label={`Resume ${scope}…`}>
        Resume…
      </button>
    );
  }
  const submit = (event: FormEvent) => {
    event.preventDefault();
    resume.mutate();
  };
  return (
    <form className="ops-resume" onSubmit={submit}>
      <label htmlFor={id}>Why resume {scope}? (optional)</label>
      <input id={id} ref={input} value={reason} onChange={(e) => setReason(e.target.value)} autoComplete="off" />
      <div className="ops-row">
        <button type="submit" className="primary" disabled={resume.isPending}>
          Resume {scope}
        </button>
        <button type="button" onClick={() => setOpen(false)}>
          Cancel
        </button>
      </div>
      <ErrorNotice error={resume.error} prefix="Not resumed" />
    </form>
  );
}
