// Schedules: every recurring action, by id, with what an operator scans
// for: its clock in words, when it ticks next, what its last tick did,
// whether it is paused and whose name its actions carry. Pages refresh
// with events (keys.schedules). Producers may create one here with the
// common template fields; actionctl takes them all.
import { keepPreviousData, useQuery } from "@tanstack/react-query";
import { useState } from "react";
import { Link } from "wouter";
import { type Schedule, type ScheduleTick, ScheduleTickOutcome } from "../../../gen/actionq/v1/action_queue_service_pb.js";
import { api } from "../api.js";
import { ActionLink, ErrorNotice, When } from "../components/badges.js";
import { NewScheduleForm } from "../components/schedule-form.js";
import { can, useMe } from "../identity.js";
import { clip } from "../format.js";
import { keys } from "../live.js";
import { OUTCOME_WORDS, clockInWords, untilNextTick } from "../schedule-words.js";
import "../components/ops-shared.css";
import "./schedules.css";

const PAGE_SIZE = 50;

export function SchedulesPage() {
  const me = useMe();
  // Tokens of the pages before this one, for Previous.
  const [tokens, setTokens] = useState<string[]>([""]);
  const token = tokens[tokens.length - 1] ?? "";
  const page = useQuery({
    queryKey: [...keys.schedules, "list", token] as const,
    queryFn: () => api.listSchedules({ pageSize: PAGE_SIZE, pageToken: token }),
    placeholderData: keepPreviousData,
    refetchInterval: (query) => untilNextTick(query.state.data?.schedules ?? []),
  });
  const schedules = page.data?.schedules ?? [];
  const nextToken = page.data?.nextPageToken ?? "";
  return (
    <div className="ops-schedules">
      <h1>Schedules</h1>
      <p className="muted">
        Each schedule enqueues one action per tick of its clock, in its owner's name; the policy, pauses and change windows apply as to any other action.{" "}
        {can(me, "producer") ? (
          <>
            Create one here, or with <code>actionctl schedule create</code> for every template field.
          </>
        ) : (
          <>
            Creating one needs the producer role (or <code>actionctl schedule create</code> with a producer's token).
          </>
        )}
      </p>
      {can(me, "producer") && <NewScheduleForm />}
      <ErrorNotice error={page.error} prefix="The schedules could not be loaded" />
      {page.isPending && <p aria-busy="true">Loading schedules…</p>}
      {page.data && schedules.length === 0 && tokens.length === 1 && <p className="muted">No schedules yet.</p>}
      {schedules.length > 0 && <SchedulesTable schedules={schedules} />}
      {(tokens.length > 1 || nextToken) && (
        <nav className="ops-pager" aria-label="Pages">
          <button type="button" onClick={() => setTokens(tokens.slice(0, -1))} disabled={tokens.length === 1 || page.isPlaceholderData}>
            ← Previous
          </button>
          <button type="button" onClick={() => setTokens([...tokens, nextToken])} disabled={!nextToken || page.isPlaceholderData}>
            Next →
          </button>
        </nav>
      )}
    </div>
  );
}

function SchedulesTable({ schedules }: { schedules: Schedule[] }) {
  return (
    <div className="ops-table-wrap">
      <table className="ops-table schedules-table">
        <caption className="visually-hidden">Schedules, by id</caption>
        <thead>
          <tr>
            <th scope="col">Schedule</th>
            <th scope="col">Clock</th>
            <th scope="col">Next tick</th>
            <th scope="col">Last tick</th>
            <th scope="col">State</th>
            <th scope="col">Owner</th>
            <th scope="col">Action type</th>
          </tr>
        </thead>
        <tbody>
          {schedules.map((schedule) => {
            const clock = clockInWords(schedule);
            return (
              <tr key={schedule.id}>
                <th scope="row">
                  <Link href={`/schedules/${encodeURIComponent(schedule.id)}`} className="mono">
                    {schedule.id}
                  </Link>
                  {schedule.description && <span className="muted ops-small">{schedule.description}</span>}
                </th>
                <td>
                  {clock.words}
                  {clock.zone && <span className="muted"> ({clock.zone})</span>}
                </td>
                <td className="ops-nowrap">{schedule.nextTickTime ? <When at={schedule.nextTickTime} /> : <span className="muted">none</span>}</td>
                <td>
                  <LastTick tick={schedule.lastTick} />
                </td>
                <td>
                  <ScheduleState schedule={schedule} />
                </td>
                <td className="mono">{schedule.owner}</td>
                <td className="mono">{schedule.template?.actionType}</td>
              </tr>
            );
          })}
        </tbody>
      </table>
    </div>
  );
}

export function OutcomeBadge({ tick }: { tick: ScheduleTick }) {
  const words = OUTCOME_WORDS[tick.outcome] ?? OUTCOME_WORDS[ScheduleTickOutcome.UNSPECIFIED];
  return <span className={`badge outcome-${words.tone}`}>{words.name}</span>;
}

function LastTick({ tick }: { tick: ScheduleTick | undefined }) {
  if (!tick) return <span className="muted">no tick yet</span>;
  return (
    <span className="schedule-last-tick">
      <OutcomeBadge tick={tick} /> <When at={tick.tickTime} />
      {tick.actionId !== 0n && (
        <>
          {" "}
          <ActionLink id={tick.actionId} />
        </>
      )}
      {/* Why a tick made no action (refused, skipped) is what the operator looks for. */}
      {tick.actionId === 0n && tick.reason && (
        <span className="muted ops-small" title={tick.reason.length > 60 ? tick.reason : undefined}>
          {clip(tick.reason, 60)}
        </span>
      )}
    </span>
  );
}

/** "paused" (with why, on hover and for screen readers) or "active". */
export function ScheduleState({ schedule }: { schedule: Schedule }) {
  if (!schedule.paused) return <span className="badge schedule-active">active</span>;
  return (
    <span className="badge schedule-paused" title={schedule.pauseReason || undefined}>
      paused{schedule.pauseReason && <span className="visually-hidden">: {schedule.pauseReason}</span>}
    </span>
  );
}
