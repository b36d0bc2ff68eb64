// Live events: a tail of the event log, newest at the top. It starts from
// now, or from any cursor (0 replays the whole log); it can be narrowed to
// some event types or one action; and it survives a server restart by
// resuming from its cursor, with no gap and no repeat (followEvents).
import { type FormEvent, memo, useId, useState } from "react";
import type { Event } from "../../../gen/actionq/v1/action_pb.js";
import { ActionLink } from "../components/badges.js";
import { EVENT_TYPES } from "../../../src/domain/vocabulary.js";
import { clip, isoTime } from "../format.js";
import type { LiveStatus } from "../live.js";
import { KEPT_ROWS, type TailOptions, useEventTail } from "./events-tail.js";
import "../components/ops-shared.css";
import "./events.css";

type Problem = { field: "after" | "action"; text: string };

export function EventsPage() {
  const ids = useId();
  const [options, setOptions] = useState<TailOptions>({ afterId: undefined, actionId: 0n, eventTypes: [], run: 0 });
  const [from, setFrom] = useState<"now" | "cursor">("now");
  const [after, setAfter] = useState("");
  const [types, setTypes] = useState<string[]>([]);
  const [action, setAction] = useState("");
  const [problem, setProblem] = useState<Problem | undefined>(undefined);
  const tail = useEventTail(options);

  const follow = (event: FormEvent) => {
    event.preventDefault();
    let afterId: bigint | undefined;
    if (from === "cursor") {
      if (!/^\d+$/.test(after.trim())) return setProblem({ field: "after", text: "The cursor is an event id: a whole number, 0 for the whole log." });
      afterId = BigInt(after.trim());
    }
    if (action.trim() !== "" && !/^[1-9]\d*$/.test(action.trim())) return setProblem({ field: "action", text: "An action id is a whole number from 1." });
    setProblem(undefined);
    setOptions({ afterId, actionId: action.trim() === "" ? 0n : BigInt(action.trim()), eventTypes: types, run: options.run + 1 });
  };
  const field = (name: Problem["field"]) => (problem?.field === name ? { "aria-invalid": true as const, "aria-describedby": `${ids}-problem` } : {});

  return (
    <div className="ops-events">
      <h1>Events</h1>
      <form className="ops-events-form" onSubmit={follow} noValidate aria-label="What to follow">
        <fieldset>
          <legend>Start</legend>
          <label className="ops-check">
            <input type="radio" name={`${ids}-from`} checked={from === "now"} onChange={() => setFrom("now")} /> From now
          </label>
          <label className="ops-check">
            <input type="radio" name={`${ids}-from`} checked={from === "cursor"} onChange={() => setFrom("cursor")} /> After event id
          </label>
          <label htmlFor={`${ids}-after`} className="visually-hidden">
            Start after event id
          </label>
          <input
            id={`${ids}-after`}
            inputMode="numeric"
            className="ops-narrow"
            value={after}
            placeholder="0 = whole log"
            onChange={(e) => {
              setAfter(e.target.value);
              setFrom("cursor");
            }}
            {...field("after")}
          />
        </fieldset>
        <div className="ops-field">
          <label htmlFor={`${ids}-types`}>Event types</label>
          <select
            id={`${ids}-types`}
            multiple
            size={5}
            value={types}
            onChange={(e) => setTypes([...e.target.selectedOptions].map((o) => o.value))}
            aria-describedby={`${ids}-types-hint`}
          >
            {EVENT_TYPES.map((type) => (
              <option key={type} value={type}>
                {type}
              </option>
            ))}
          </select>
          <span id={`${ids}-types-hint`} className="muted ops-small">
            None selected: every type. Ctrl or Shift to pick several.
          </span>
        </div>
        <div className="ops-field">
          <label htmlFor={`${ids}-action`}>Action id</label>
          <input
            id={`${ids}-action`}
            inputMode="numeric"
            className="ops-narrow"
            value={action}
            placeholder="any"
            onChange={(e) => setAction(e.target.value)}
            {...field("action")}
          />
        </div>
        <div className="ops-row ops-follow">
          <button type="submit" className="primary">
            Follow
          </button>
        </div>
        {problem && (
          <p id={`${ids}-problem`} className="notice error" role="alert">
            {problem.text}
          </p>
        )}
      </form>

      <div className="ops-tail-bar">
        <StatusLine status={tail.status} cursor={tail.cursor} />
        <span className="muted">
          {tail.received} received · {tail.rows.length} shown
          {tail.dropped > 0 ? ` · ${tail.dropped} older ones dropped from view (the last ${KEPT_ROWS.toLocaleString("en")} are kept)` : ""}
        </span>
        <div className="ops-row ops-tail-buttons">
          <button type="button" onClick={() => tail.setPaused(!tail.paused)} aria-pressed={tail.paused}>
            {tail.paused ? `Resume display${tail.held > 0 ? ` (${tail.held} new)` : ""}` : "Pause display"}
          </button>
          <button type="button" onClick={tail.clear} disabled={tail.rows.length === 0}>
            Clear
          </button>
        </div>
      </div>
      {tail.paused && (
        <p className="notice">
          The display is paused; {tail.held} new event{tail.held === 1 ? "" : "s"} held. The stream keeps following, nothing is lost.
        </p>
      )}
      <EventsTable rows={tail.rows} />
    </div>
  );
}

function StatusLine({ status, cursor }: { status: LiveStatus; cursor: bigint | undefined }) {
  const where = cursor === undefined ? "from now" : `after event ${cursor}`;
  return (
    <span className={`ops-tail-status ops-tail-${status.state}`}>
      <span role="status">
        {status.state === "live" ? "Live" : status.state === "connecting" ? "Connecting…" : `Reconnecting in ${Math.ceil(status.retryInMs / 1000)}s`}
      </span>
      {status.state === "reconnecting" && <span>: {status.error}</span>}
      <span className="muted mono"> · cursor {where}</span>
    </span>
  );
}

function EventsTable({ rows }: { rows: Event[] }) {
  return (
    <div className="ops-table-wrap">
      <table className="ops-table ops-events-table">
        <caption className="visually-hidden">Events, newest first</caption>
        <thead>
          <tr>
            <th scope="col" className="num">
              Id
            </th>
            <th scope="col">Time (UTC)</th>
            <th scope="col">Type</th>
            <th scope="col">Action</th>
            <th scope="col">Actor</th>
            <th scope="col">Payload</th>
          </tr>
        </thead>
        <tbody>
          {rows.length === 0 ? (
            <tr>
              <td colSpan={6} className="muted">
                Waiting for events…
              </td>
            </tr>
          ) : (
            rows.map((event) => <EventRow key={event.id.toString()} event={event} />)
          )}
        </tbody>
      </table>
    </div>
  );
}

const EventRow = memo(function EventRow({ event }: { event: Event }) {
  const json = event.payload && Object.keys(event.payload).length > 0 ? JSON.stringify(event.payload) : "";
  const iso = isoTime(event.createTime);
  return (
    <tr>
      <td className="num mono">{event.id.toString()}</td>
      <td className="ops-nowrap mono">
        <time dateTime={iso} title={iso}>
          {iso.slice(0, 10) === new Date().toISOString().slice(0, 10) ? iso.slice(11, 19) : iso.slice(0, 19).replace("T", " ")}
        </time>
      </td>
      <td>
        <span className={`ops-event-type ops-event-${event.eventType}`}>{event.eventType}</span>
      </td>
      <td className="mono">{event.actionId === 0n ? <span className="muted">—</span> : <ActionLink id={event.actionId} />}</td>
      <td>{event.actor}</td>
      <td className="mono ops-payload" title={json.length > 140 ? json : undefined}>
        {clip(json, 140)}
      </td>
    </tr>
  );
});
