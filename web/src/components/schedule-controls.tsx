// What a person may do to a schedule, as its roles allow: pause it (with a
// reason, as the server requires), resume it, delete it after a second
// step, and backfill a past interval. The schedule's owner may do all of
// it; an operator may pause, resume and delete; an admin may backfill.
// The server decides each call anyway, and its refusal is shown as said.
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { useMutation, useQueryClient } from "@tanstack/react-query";
import { type FormEvent, useEffect, useId, useRef, useState } from "react";
import { useLocation } from "wouter";
import { type Schedule, ScheduleTickOutcome } from "../../../gen/actionq/v1/action_queue_service_pb.js";
import { api } from "../api.js";
import { actorField, can, useMe } from "../identity.js";
import { keys } from "../live.js";
import { ErrorNotice } from "./badges.js";
import "./ops-shared.css";

const RFC3339 = /^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?([Zz]|[+-]\d{2}:\d{2})$/;

/** An RFC 3339 instant with its zone, or undefined. */
function parseInstant(text: string): Date | undefined {
  const trimmed = text.trim();
  if (!RFC3339.test(trimmed)) return undefined;
  const date = new Date(trimmed);
  return Number.isNaN(date.getTime()) ? undefined : date;
}

export function ScheduleControls({ schedule }: { schedule: Schedule }) {
  const me = useMe();
  const owner = me.auth && me.name === schedule.owner;
  const mayPause = owner || can(me, "operator");
  const mayBackfill = owner || can(me, "admin");
  // Pausing swaps the pause form for the resume form (and back): the focus
  // follows to the new form instead of falling to the page's start.
  const [swapped, setSwapped] = useState(false);
  if (!mayPause && !mayBackfill) {
    return (
      <p className="muted">
        Pausing, resuming and deleting a schedule need its owner or the operator role, and backfilling its owner or an admin; you see the schedule as it
        changes.
      </p>
    );
  }
  return (
    <section className="panel schedule-controls" aria-labelledby="schedule-controls-heading">
      <h2 id="schedule-controls-heading">Controls</h2>
      <div className="schedule-control-grid">
        {mayPause &&
          (schedule.paused ? (
            <ResumeForm schedule={schedule} focusOnMount={swapped} onDone={() => setSwapped(true)} />
          ) : (
            <PauseForm schedule={schedule} focusOnMount={swapped} onDone={() => setSwapped(true)} />
          ))}
        {mayBackfill && <BackfillForm schedule={schedule} />}
        {mayPause && <DeleteControl schedule={schedule} />}
      </div>
    </section>
  );
}

interface SwapProps {
  schedule: Schedule;
  /** Take the focus when shown: the other form was just used. */
  focusOnMount: boolean;
  onDone(): void;
}

/** A heading that takes the focus when its form replaces the other one. */
function useFocusOnMount(focusOnMount: boolean) {
  const heading = useRef<HTMLHeadingElement>(null);
  useEffect(() => {
    if (focusOnMount) heading.current?.focus();
  }, [focusOnMount]);
  return heading;
}

function useRefresh() {
  const queryClient = useQueryClient();
  return () => queryClient.invalidateQueries({ queryKey: keys.schedules });
}

function PauseForm({ schedule, focusOnMount, onDone }: SwapProps) {
  const me = useMe();
  const heading = useFocusOnMount(focusOnMount);
  const refresh = useRefresh();
  const id = useId();
  const [reason, setReason] = useState("");
  const [problem, setProblem] = useState<string | undefined>(undefined);
  const pause = useMutation({
    mutationFn: (why: string) => api.pauseSchedule({ id: schedule.id, reason: why, actor: actorField(me) }),
    onSuccess: () => {
      setReason("");
      onDone();
      return refresh();
    },
  });
  const submit = (event: FormEvent) => {
    event.preventDefault();
    if (reason.trim() === "") {
      setProblem("Give a reason: it is kept on the schedule and shown to everyone who reads it.");
      return;
    }
    setProblem(undefined);
    pause.mutate(reason.trim());
  };
  return (
    <form className="schedule-control" onSubmit={submit} noValidate aria-label="Pause the schedule">
      <h3 ref={heading} tabIndex={-1}>
        Pause
      </h3>
      <p className="muted ops-small">Ticks pass without an action until it is resumed; they are not caught up.</p>
      <label htmlFor={`${id}-reason`}>Why pause? (required)</label>
      <textarea
        id={`${id}-reason`}
        value={reason}
        onChange={(e) => setReason(e.target.value)}
        aria-required="true"
        aria-invalid={problem ? true : undefined}
        aria-describedby={problem ? `${id}-problem` : undefined}
        placeholder="e.g. INC-1234: the target is being rebuilt"
      />
      {problem && (
        <p id={`${id}-problem`} className="notice error" role="alert">
          {problem}
        </p>
      )}
      <ErrorNotice error={pause.error} prefix="Not paused" />
      <div className="ops-row">
        <button type="submit" className="danger" disabled={pause.isPending}>
          Pause schedule
        </button>
      </div>
    </form>
  );
}

function ResumeForm({ schedule, focusOnMount, onDone }: SwapProps) {
  const me = useMe();
  const heading = useFocusOnMount(focusOnMount);
  const refresh = useRefresh();
  const id = useId();
  const [reason, setReason] = useState("");
  const resume = useMutation({
    mutationFn: () => api.resumeSchedule({ id: schedule.id, reason: reason.trim(), actor: actorField(me) }),
    onSuccess: () => {
      setReason("");
      onDone();
      return refresh();
    },
  });
  const submit = (event: FormEvent) => {
    event.preventDefault();
    resume.mutate();
  };
  return (
    <form className="schedule-control" onSubmit={submit} aria-label="Resume the schedule">
      <h3 ref={heading} tabIndex={-1}>
        Resume
      </h3>
      <p className="muted ops-small">It ticks again from its next tick.</p>
      <label htmlFor={`${id}-reason`}>Why resume? (optional)</label>
      <input id={`${id}-reason`} value={reason} onChange={(e) => setReason(e.target.value)} autoComplete="off" />
      <ErrorNotice error={resume.error} prefix="Not resumed" />
      <div className="ops-row">
        <button type="submit" className="primary" disabled={resume.isPending}>
          Resume schedule
        </button>
      </div>
    </form>
  );
}

type BackfillProblem = { field: "from" | "to"; text: string };

function BackfillForm({ schedule }: { schedule: Schedule }) {
  const me = useMe();
  const refresh = useRefresh();
  const id = useId();
  const [from, setFrom] = useState("");
  const [to, setTo] = useState("");
  const [problem, setProblem] = useState<BackfillProblem | undefined>(undefined);
  const backfill = useMutation({
    mutationFn: (interval: { from: Date; to: Date }) =>
      api.backfillSchedule({
        id: schedule.id,
        startTime: timestampFromDate(interval.from),
        endTime: timestampFromDate(interval.to),
        actor: actorField(me),
      }),
    onSuccess: () => refresh(),
  });
  const submit = (event: FormEvent) => {
    event.preventDefault();
    backfill.reset();
    const start = parseInstant(from);
    if (!start) return setProblem({ field: "from", text: "From is an RFC 3339 time with its zone, such as 2026-12-07T09:00:00Z." });
    const end = to.trim() === "" ? new Date() : parseInstant(to);
    if (!end) return setProblem({ field: "to", text: "To is an RFC 3339 time with its zone, or empty for now." });
    if (end <= start) return setProblem({ field: "to", text: "To must be after From." });
    setProblem(undefined);
    backfill.mutate({ from: start, to: end });
  };
  const invalid = (field: BackfillProblem["field"]) =>
    problem?.field === field ? { "aria-invalid": true as const, "aria-describedby": `${id}-problem` } : { "aria-describedby": `${id}-hint` };
  const ticks = backfill.data?.ticks ?? [];
  const enqueued = ticks.filter((tick) => tick.outcome === ScheduleTickOutcome.ENQUEUED).length;
  return (
    <form className="schedule-control" onSubmit={submit} noValidate aria-label="Backfill the schedule">
      <h3>Backfill</h3>
      <p id={`${id}-hint`} className="muted ops-small">
        Enqueue now the ticks of a past interval, once each, oldest first. A tick that already has an action keeps it. Times are RFC 3339 with a zone.
      </p>
      <div className="schedule-interval">
        <div className="ops-field">
          <label htmlFor={`${id}-from`}>From (included)</label>
          <input
            id={`${id}-from`}
            value={from}
            onChange={(e) => setFrom(e.target.value)}
            placeholder="2026-12-07T09:00:00Z"
            spellCheck={false}
            {...invalid("from")}
          />
        </div>
        <div className="ops-field">
          <label htmlFor={`${id}-to`}>To (excluded; empty: now)</label>
          <input id={`${id}-to`} value={to} onChange={(e) => setTo(e.target.value)} placeholder="now" spellCheck={false} {...invalid("to")} />
        </div>
      </div>
      {problem && (
        <p id={`${id}-problem`} className="notice error" role="alert">
          {problem.text}
        </p>
      )}
      <ErrorNotice error={backfill.error} prefix="Not backfilled" />
      {backfill.data && (
        <p className="notice ok" role="status">
          {ticks.length === 0
            ? "The interval holds no tick."
            : `Backfilled ${ticks.length} tick${ticks.length === 1 ? "" : "s"}: ${enqueued} with an action, ${ticks.length - enqueued} without.`}
        </p>
      )}
      <div className="ops-row">
        <button type="submit" disabled={backfill.isPending}>
          Backfill interval
        </button>
      </div>
    </form>
  );
}

function DeleteControl({ schedule }: { schedule: Schedule }) {
  const me = useMe();
  const queryClient = useQueryClient();
  const [, navigate] = useLocation();
  const id = useId();
  const [open, setOpen] = useState(false);
  const [reason, setReason] = useState("");
  const remove = useMutation({
    mutationFn: () => api.deleteSchedule({ id: schedule.id, reason: reason.trim(), actor: actorField(me) }),
    onSuccess: async () => {
      queryClient.removeQueries({ queryKey: keys.schedule(schedule.id) });
      await queryClient.invalidateQueries({ queryKey: keys.schedules });
      navigate("/schedules");
    },
  });
  if (!open) {
    return (
      <div className="schedule-control">
        <h3>Delete</h3>
        <p className="muted ops-small">No more ticks. The actions it enqueued and its events stay.</p>
        <div className="ops-row">
          <button type="button" onClick={() => setOpen(true)}>
            Delete schedule…
          </button>
        </div>
      </div>
    );
  }
  const submit = (event: FormEvent) => {
    event.preventDefault();
    remove.mutate();
  };
  return (
    <form className="schedule-control schedule-delete" onSubmit={submit} aria-label="Delete the schedule">
      <h3>Delete {schedule.id}?</h3>
      <p className="ops-small">It will tick no more. The actions it enqueued and its events stay; the id may be used again.</p>
      <label htmlFor={`${id}-reason`}>Why delete? (optional)</label>
      <input id={`${id}-reason`} value={reason} onChange={(e) => setReason(e.target.value)} autoComplete="off" />
      <ErrorNotice error={remove.error} prefix="Not deleted" />
      <div className="ops-row">
        <button type="submit" className="danger" disabled={remove.isPending}>
          Delete {schedule.id}
        </button>
        <button type="button" onClick={() => setOpen(false)}>
          Keep it
        </button>
      </div>
    </form>
  );
}
