// The kill switch: an operator stops claims (all of them, one action type
// or one project) or stops the policy from approving by itself. A reason
// is required, as the server requires it: it is what every other console
// shows next to the pause. The pause is an event, so every open console
// shows it within a second (refreshPauses).
import { useMutation, useQueryClient } from "@tanstack/react-query";
import { type FormEvent, useId, useState } from "react";
import { create } from "@bufbuild/protobuf";
import { PauseKind, PauseScopeSchema } from "../../../gen/actionq/v1/action_queue_service_pb.js";
import { api } from "../api.js";
import { actorField, useMe } from "../identity.js";
import { refreshPauses } from "../live.js";
import { ErrorNotice } from "./badges.js";
import { scopeText } from "./ops-pauses.js";

const CHOICES = [
  { kind: PauseKind.ALL, label: "All claims", hint: "No worker receives any action." },
  { kind: PauseKind.ACTION_TYPE, label: "One action type", hint: "Workers receive no action of this type." },
  { kind: PauseKind.PROJECT, label: "One project", hint: "Workers receive no action of this project." },
  { kind: PauseKind.AUTO_APPROVAL, label: "Auto-approval", hint: "Every new action waits for a human; claiming goes on." },
] as const;

type Problem = { field: "value" | "reason"; text: string };

export function KillSwitch({ knownTypes }: { knownTypes: string[] }) {
  const me = useMe();
  const queryClient = useQueryClient();
  const ids = useId();
  const [kind, setKind] = useState<PauseKind>(PauseKind.ALL);
  const [value, setValue] = useState("");
  const [reason, setReason] = useState("");
  const [problem, setProblem] = useState<Problem | undefined>(undefined);
  const needsValue = kind === PauseKind.ACTION_TYPE || kind === PauseKind.PROJECT;
  const scope = create(PauseScopeSchema, { kind, value: needsValue ? value.trim() : "" });

  const pause = useMutation({
    mutationFn: (request: { scope: typeof scope; reason: string }) => api.pauseClaims({ ...request, actor: actorField(me) }),
    onSuccess: () => {
      setReason("");
      return refreshPauses(queryClient);
    },
  });

  const submit = (event: FormEvent) => {
    event.preventDefault();
    pause.reset();
    if (needsValue && scope.value === "") {
      setProblem({ field: "value", text: kind === PauseKind.PROJECT ? "Name the project to pause." : "Name the action type to pause." });
      return;
    }
    if (reason.trim() === "") {
      setProblem({ field: "reason", text: "Give a reason: it is kept on the pause and shown on every console." });
      return;
    }
    setProblem(undefined);
    pause.mutate({ scope, reason: reason.trim() });
  };

  const valueId = `${ids}-value`;
  const reasonId = `${ids}-reason`;
  const problemId = `${ids}-problem`;
  const buttonText = `Pause ${scopeText(scope)}`.trim();
  const done = pause.data?.pause;
  return (
    <form className="ops-kill-switch" onSubmit={submit} noValidate aria-label="Pause">
      <fieldset>
        <legend>What to pause</legend>
        <div className="ops-choices">
          {CHOICES.map((choice) => (
            <label key={choice.kind} className={kind === choice.kind ? "ops-choice ops-chosen" : "ops-choice"}>
              <input
                type="radio"
                name={`${ids}-kind`}
                checked={kind === choice.kind}
                onChange={() => {
                  setKind(choice.kind);
                  setProblem(undefined);
                }}
              />
              <span>
                {choice.label}
                <span className="muted ops-small">{choice.hint}</span>
              </span>
            </label>
          ))}
        </div>
      </fieldset>
      {needsValue && (
        <div className="ops-field">
          <label htmlFor={valueId}>{kind === PauseKind.PROJECT ? "Project" : "Action type"}</label>
          <input
            id={valueId}
            value={value}
            onChange={(e) => setValue(e.target.value)}
            list={kind === PauseKind.ACTION_TYPE ? `${ids}-types` : undefined}
            spellCheck={false}
            autoComplete="off"
            aria-invalid={problem?.field === "value" || undefined}
            aria-describedby={problem?.field === "value" ? problemId : undefined}
          />
          <datalist id={`${ids}-types`}>
            {knownTypes.map((type) => (
              <option key={type} value={type} />
            ))}
          </datalist>
        </div>
      )}
      <div className="ops-field">
        <label htmlFor={reasonId}>Reason (required)</label>
        <textarea
          id={reasonId}
          value={reason}
          onChange={(e) => setReason(e.target.value)}
          required
          aria-required="true"
          aria-invalid={problem?.field === "reason" || undefined}
          aria-describedby={problem?.field === "reason" ? problemId : undefined}
          placeholder="e.g. INC-1234: database failover in progress"
        />
      </div>
      {problem && (
        <p id={problemId} className="notice error" role="alert">
          {problem.text}
        </p>
      )}
      <ErrorNotice error={pause.error} prefix="Not paused" />
      {done && (
        <p className="notice ok" role="status">
          {pause.data?.created ? `Paused ${scopeText(done.scope)}.` : `${scopeText(done.scope)} was already paused by ${done.pausedBy}; that pause stays.`}
        </p>
      )}
      <div className="ops-row">
        <button type="submit" className="danger" disabled={pause.isPending}>
          {buttonText}
        </button>
      </div>
    </form>
  );
}
