// A new schedule, for producers: the common part of a template (type,
// target, project, risk, payload), a clock (cron in a time zone, or a
// fixed interval) and the overlap policy. Everything else a template may
// hold is set with `actionctl schedule create`. The server checks the
// schedule as it checks an enqueue, and its refusal is shown as said.
import { type JsonObject, create } from "@bufbuild/protobuf";
import { DurationSchema } from "@bufbuild/protobuf/wkt";
import { useMutation, useQueryClient } from "@tanstack/react-query";
import { type FormEvent, useEffect, useId, useRef, useState } from "react";
import { useLocation } from "wouter";
import { RiskLevel } from "../../../gen/actionq/v1/action_pb.js";
import { SchedulePolicyOverlap } from "../../../gen/actionq/v1/action_queue_service_pb.js";
import { api } from "../api.js";
import { actorField, useMe } from "../identity.js";
import { keys } from "../live.js";
import { OVERLAP_WORDS, cronInWords } from "../schedule-words.js";
import { ErrorNotice } from "./badges.js";

const SCHEDULE_ID = /^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$/;
const UNIT_SECONDS: Record<string, number> = { s: 1, m: 60, h: 3600, d: 86_400 };

/** `30s`, `15m`, `24h`, `1d` as a Duration, or undefined. */
function durationOf(text: string) {
  const match = /^(\d+)(s|m|h|d)$/.exec(text.trim());
  return match ? create(DurationSchema, { seconds: BigInt(Number(match[1]) * UNIT_SECONDS[match[2]!]!) }) : undefined;
}

function payloadOf(text: string): JsonObject | undefined | "invalid" {
  if (text.trim() === "") return undefined;
  try {
    const value: unknown = JSON.parse(text);
    return value !== null && typeof value === "object" && !Array.isArray(value) ? (value as JsonObject) : "invalid";
  } catch {
    return "invalid";
  }
}

const OVERLAPS = [SchedulePolicyOverlap.SKIP, SchedulePolicyOverlap.BUFFER_ONE, SchedulePolicyOverlap.ALLOW_ALL, SchedulePolicyOverlap.CANCEL_OTHER];

type Field = "id" | "type" | "cron" | "interval" | "payload";

export function NewScheduleForm() {
  const me = useMe();
  const queryClient = useQueryClient();
  const [, navigate] = useLocation();
  const ids = useId();
  const [open, setOpen] = useState(false);
  // Opening puts the focus in the first field; cancelling puts it back on
  // the button that opened the form.
  const firstField = useRef<HTMLInputElement>(null);
  const opener = useRef<HTMLButtonElement>(null);
  const [returnFocus, setReturnFocus] = useState(false);
  useEffect(() => {
    if (open) firstField.current?.focus();
    else if (returnFocus) opener.current?.focus();
  }, [open, returnFocus]);
  const [form, setForm] = useState({
    id: "",
    type: "",
    target: "",
    project: "",
    risk: RiskLevel.UNSPECIFIED,
    payload: "",
    clock: "cron" as "cron" | "interval",
    cron: "",
    timeZone: "UTC",
    interval: "",
    overlap: SchedulePolicyOverlap.SKIP,
    description: "",
  });
  const [problem, setProblem] = useState<{ field: Field; text: string } | undefined>(undefined);
  const set = <K extends keyof typeof form>(key: K, value: (typeof form)[K]) => setForm({ ...form, [key]: value });

  const createSchedule = useMutation({
    mutationFn: (request: Parameters<typeof api.createSchedule>[0]) => api.createSchedule(request),
    onSuccess: async (response) => {
      await queryClient.invalidateQueries({ queryKey: keys.schedules });
      navigate(`/schedules/${encodeURIComponent(response.schedule?.id ?? form.id.trim())}`);
    },
  });

  if (!open) {
    return (
      <div className="ops-row">
        <button type="button" ref={opener} onClick={() => setOpen(true)}>
          New schedule…
        </button>
      </div>
    );
  }

  const submit = (event: FormEvent) => {
    event.preventDefault();
    createSchedule.reset();
    const payload = payloadOf(form.payload);
    const interval = durationOf(form.interval);
    const fail = (field: Field, text: string) => setProblem({ field, text });
    if (!SCHEDULE_ID.test(form.id.trim())) return fail("id", "An id is letters, digits and _ . : - (up to 128), such as nightly-diagnostics.");
    if (form.type.trim() === "") return fail("type", "Name the action type each tick enqueues.");
    if (form.clock === "cron" && form.cron.trim() === "") return fail("cron", "Give a cron expression, such as 0 3 * * *.");
    if (form.clock === "interval" && !interval) return fail("interval", "An interval is a number and a unit: 30s, 15m, 24h or 1d.");
    if (payload === "invalid") return fail("payload", 'The payload is a JSON object, such as {"depth": 2}.');
    setProblem(undefined);
    createSchedule.mutate({
      owner: actorField(me),
      schedule: {
        id: form.id.trim(),
        template: { actionType: form.type.trim(), targetRef: form.target.trim(), project: form.project.trim(), riskLevel: form.risk, payload },
        clock: form.clock === "cron" ? { case: "cron", value: form.cron.trim() } : { case: "interval", value: interval! },
        timeZone: form.clock === "cron" ? form.timeZone.trim() : "",
        overlapPolicy: form.overlap,
        description: form.description.trim(),
      },
    });
  };
  const field = (name: Field) =>
    problem?.field === name ? { "aria-invalid": true as const, "aria-describedby": `${ids}-problem` } : ({} as Record<string, never>);
  const words = form.clock === "cron" && form.cron.trim() ? cronInWords(form.cron) : undefined;

  return (
    <form className="panel schedule-new" onSubmit={submit} noValidate aria-labelledby={`${ids}-heading`}>
      <h2 id={`${ids}-heading`}>New schedule</h2>
      <p className="muted ops-small">
        Each tick enqueues this action in your name. More template fields (priority, concurrency key, rollback…) are set with{" "}
        <code>actionctl schedule create</code>.
      </p>
      <div className="schedule-form-grid">
        <div className="ops-field">
          <label htmlFor={`${ids}-id`}>Id</label>
          <input
            id={`${ids}-id`}
            ref={firstField}
            value={form.id}
            onChange={(e) => set("id", e.target.value)}
            spellCheck={false}
            autoComplete="off"
            {...field("id")}
          />
        </div>
        <div className="ops-field">
          <label htmlFor={`${ids}-type`}>Action type</label>
          <input id={`${ids}-type`} value={form.type} onChange={(e) => set("type", e.target.value)} spellCheck={false} autoComplete="off" {...field("type")} />
        </div>
        <div className="ops-field">
          <label htmlFor={`${ids}-target`}>Target (optional)</label>
          <input id={`${ids}-target`} value={form.target} onChange={(e) => set("target", e.target.value)} spellCheck={false} autoComplete="off" />
        </div>
        <div className="ops-field">
          <label htmlFor={`${ids}-project`}>Project (optional)</label>
          <input id={`${ids}-project`} value={form.project} onChange={(e) => set("project", e.target.value)} spellCheck={false} autoComplete="off" />
        </div>
        <div className="ops-field">
          <label htmlFor={`${ids}-risk`}>Risk</label>
          <select id={`${ids}-risk`} value={form.risk} onChange={(e) => set("risk", Number(e.target.value) as RiskLevel)}>
            <option value={RiskLevel.UNSPECIFIED}>as the policy registers the type</option>
            <option value={RiskLevel.SAFE}>safe</option>
            <option value={RiskLevel.GUARDED}>guarded</option>
            <option value={RiskLevel.DANGEROUS}>dangerous</option>
          </select>
        </div>
        <div className="ops-field">
          <label htmlFor={`${ids}-overlap`}>While the previous action is unfinished</label>
          <select id={`${ids}-overlap`} value={form.overlap} onChange={(e) => set("overlap", Number(e.target.value) as SchedulePolicyOverlap)}>
            {OVERLAPS.map((overlap) => (
              <option key={overlap} value={overlap}>
                {OVERLAP_WORDS[overlap].name}
              </option>
            ))}
          </select>
          <span className="muted ops-small">{OVERLAP_WORDS[form.overlap].means}</span>
        </div>
      </div>
      <fieldset className="schedule-clock">
        <legend>Clock</legend>
        <label className="ops-inline">
          <input type="radio" name={`${ids}-clock`} checked={form.clock === "cron"} onChange={() => set("clock", "cron")} /> Cron expression
        </label>
        <label className="ops-inline">
          <input type="radio" name={`${ids}-clock`} checked={form.clock === "interval"} onChange={() => set("clock", "interval")} /> Fixed interval
        </label>
        {form.clock === "cron" ? (
          <div className="schedule-form-grid">
            <div className="ops-field">
              <label htmlFor={`${ids}-cron`}>Cron (minute hour day month weekday)</label>
              <input
                id={`${ids}-cron`}
                value={form.cron}
                onChange={(e) => set("cron", e.target.value)}
                placeholder="0 3 * * *"
                spellCheck={false}
                autoComplete="off"
                {...field("cron")}
              />
              {words && <span className="muted ops-small">{words}</span>}
            </div>
            <div className="ops-field">
              <label htmlFor={`${ids}-zone`}>Time zone</label>
              <input id={`${ids}-zone`} value={form.timeZone} onChange={(e) => set("timeZone", e.target.value)} spellCheck={false} autoComplete="off" />
            </div>
          </div>
        ) : (
          <div className="ops-field">
            <label htmlFor={`${ids}-interval`}>Every</label>
            <input
              id={`${ids}-interval`}
              value={form.interval}
              onChange={(e) => set("interval", e.target.value)}
              placeholder="15m"
              spellCheck={false}
              autoComplete="off"
              {...field("interval")}
            />
          </div>
        )}
      </fieldset>
      <div className="ops-field">
        <label htmlFor={`${ids}-payload`}>Payload (a JSON object, optional)</label>
        <textarea id={`${ids}-payload`} value={form.payload} onChange={(e) => set("payload", e.target.value)} spellCheck={false} {...field("payload")} />
      </div>
      <div className="ops-field">
        <label htmlFor={`${ids}-description`}>Description (optional)</label>
        <input id={`${ids}-description`} value={form.description} onChange={(e) => set("description", e.target.value)} autoComplete="off" />
      </div>
      {problem && (
        <p id={`${ids}-problem`} className="notice error" role="alert">
          {problem.text}
        </p>
      )}
      <ErrorNotice error={createSchedule.error} prefix="Not created" />
      <div className="ops-row">
        <button type="submit" className="primary" disabled={createSchedule.isPending}>
          Create schedule
        </button>
        <button
          type="button"
          onClick={() => {
            setReturnFocus(true);
            setOpen(false);
          }}
        >
          Cancel
        </button>
      </div>
    </form>
  );
}
