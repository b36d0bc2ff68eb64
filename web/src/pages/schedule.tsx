// One schedule: its clock in words and its policy, the action each tick
// enqueues, the ticks to come, the ticks acted on with links to the
// actions they made (or why none), its own events, and the controls the
// person's roles allow (components/schedule-controls.tsx). Refreshed by
// events (keys.schedules).
import type { JsonObject } from "@bufbuild/protobuf";
import type { Timestamp } from "@bufbuild/protobuf/wkt";
import { useQuery } from "@tanstack/react-query";
import type { ReactNode } from "react";
import { Link } from "wouter";
import { type Event, RiskLevel } from "../../../gen/actionq/v1/action_pb.js";
import { type EnqueueActionRequest, type Schedule, SchedulePolicyOverlap, type ScheduleTick } from "../../../gen/actionq/v1/action_queue_service_pb.js";
import { Code, api, errorCode } from "../api.js";
import { ActionLink, ErrorNotice, StatusBadge, When } from "../components/badges.js";
import { ScheduleControls } from "../components/schedule-controls.js";
import { Instant, Timeline } from "../components/timeline.js";
import { RISK_NAMES, durationMs, prettyJson, span } from "../format.js";
import { keys } from "../live.js";
import { SCHEDULE_EVENT_TYPES } from "../../../src/domain/vocabulary.js";
import { OVERLAP_WORDS, clockInWords, untilNextTick } from "../schedule-words.js";
import { OutcomeBadge, ScheduleState } from "./schedules.js";
import "../components/ops-shared.css";
import "./schedules.css";

export function SchedulePage({ id }: { id: string }) {
  const query = useQuery({
    queryKey: keys.schedule(id),
    queryFn: () => api.getSchedule({ id }),
    refetchInterval: (query) => {
      const schedule = query.state.data?.schedule;
      return untilNextTick(schedule ? [schedule] : []);
    },
  });
  if (query.isPending) {
    return (
      <div aria-busy="true">
        <h1>Schedule {id}</h1>
        <p className="muted">Loading…</p>
      </div>
    );
  }
  if (query.isError) {
    const notFound = errorCode(query.error) === Code.NotFound;
    return (
      <>
        <h1>{notFound ? `No schedule ${id}` : `Schedule ${id}`}</h1>
        {notFound ? (
          <p className="notice error" role="alert">
            The server has no schedule “{id}”. It may have been deleted; the actions it enqueued stay.
          </p>
        ) : (
          <ErrorNotice error={query.error} prefix="The schedule could not be read" />
        )}
        <p>
          <Link href="/schedules">See all schedules</Link>
        </p>
      </>
    );
  }
  const { schedule, recentTicks, upcomingTickTimes } = query.data;
  if (!schedule) return <ErrorNotice error={new Error("the server answered without the schedule")} />;
  const clock = clockInWords(schedule);
  return (
    <article className="schedule-page">
      <header className="action-head">
        <p className="action-eyebrow">
          <span className="muted">Schedule</span> <ScheduleState schedule={schedule} />
        </p>
        <h1 className="mono">{schedule.id}</h1>
        <p className="action-sub">
          <span>
            {clock.words}
            {clock.zone && <span className="muted"> ({clock.zone})</span>}
          </span>
          <span>
            <span className="muted">owned by </span>
            <span className="mono">{schedule.owner}</span>
          </span>
        </p>
        {schedule.description && <p>{schedule.description}</p>}
      </header>
      {schedule.paused && <PausedNotice schedule={schedule} />}
      <ScheduleControls schedule={schedule} />
      <div className="grid">
        <section aria-labelledby="clock-heading">
          <h2 id="clock-heading">Clock and policy</h2>
          <ClockFields schedule={schedule} />
        </section>
        <section aria-labelledby="template-heading">
          <h2 id="template-heading">Each tick enqueues</h2>
          <TemplateFields template={schedule.template} owner={schedule.owner} />
        </section>
      </div>
      <section aria-labelledby="upcoming-heading">
        <h2 id="upcoming-heading">Next ticks</h2>
        {upcomingTickTimes.length === 0 ? (
          <p className="muted">None: the schedule has ended.</p>
        ) : (
          <>
            {schedule.paused && <p className="muted">While the schedule is paused, these pass without an action.</p>}
            <ol className="schedule-upcoming">
              {upcomingTickTimes.map((at) => (
                <li key={at.seconds.toString()}>
                  <Instant at={at} />
                </li>
              ))}
            </ol>
          </>
        )}
      </section>
      <section aria-labelledby="ticks-heading">
        <h2 id="ticks-heading">Recent ticks</h2>
        <TicksTable ticks={recentTicks} />
      </section>
      <section aria-labelledby="schedule-events-heading">
        <h2 id="schedule-events-heading">Events</h2>
        <ScheduleEvents id={schedule.id} />
      </section>
    </article>
  );
}

function Row({ label, children }: { label: string; children: ReactNode }) {
  if (children === "" || children === undefined || children === null || children === false) return null;
  return (
    <>
      <dt>{label}</dt>
      <dd>{children}</dd>
    </>
  );
}

function instantOrNothing(at: Timestamp | undefined, nothing: string): ReactNode {
  return at ? <Instant at={at} /> : <span className="muted">{nothing}</span>;
}

function ClockFields({ schedule }: { schedule: Schedule }) {
  const overlap = OVERLAP_WORDS[schedule.overlapPolicy] ?? OVERLAP_WORDS[SchedulePolicyOverlap.SKIP];
  const jitter = durationMs(schedule.jitter);
  const catchUp = durationMs(schedule.catchUpWindow);
  return (
    <dl className="fields">
      <Row label="Clock">{clockInWords(schedule).words}</Row>
      <Row label="Cron">{schedule.clock.case === "cron" && <code>{schedule.clock.value}</code>}</Row>
      <Row label="Time zone">{schedule.clock.case === "cron" && <span className="mono">{schedule.timeZone || "UTC"}</span>}</Row>
      <Row label="From">{instantOrNothing(schedule.startTime, "its creation")}</Row>
      <Row label="Until">{instantOrNothing(schedule.endTime, "forever")}</Row>
      <Row label="Jitter">{jitter ? `up to ${span(jitter)} after each tick` : <span className="muted">none</span>}</Row>
      <Row label="Overlap">
        <strong>{overlap.name}</strong>: {overlap.means}
      </Row>
      <Row label="Catch up">
        {catchUp === 0
          ? "missed ticks are all skipped"
          : `ticks missed while no scheduler ran are enqueued when younger than ${catchUp === undefined ? "1m (the default)" : span(catchUp)}`}
      </Row>
      <Row label="Created">
        <Instant at={schedule.createTime} />
      </Row>
      <Row label="Changed">{schedule.updateTime && <Instant at={schedule.updateTime} />}</Row>
      <Row label="Revision">{schedule.revision.toString()}</Row>
    </dl>
  );
}

const hasKeys = (value: JsonObject | undefined) => value !== undefined && Object.keys(value).length > 0;

function TemplateFields({ template, owner }: { template: EnqueueActionRequest | undefined; owner: string }) {
  if (!template) return <p className="muted">No template.</p>;
  return (
    <>
      <dl className="fields">
        <Row label="Action type">
          <span className="mono">{template.actionType}</span>
        </Row>
        <Row label="Target">{template.targetRef && <span className="mono">{template.targetRef}</span>}</Row>
        <Row label="Project">{template.project && <span className="mono">{template.project}</span>}</Row>
        <Row label="Node / service">{[template.node, template.service].filter(Boolean).join(" / ")}</Row>
        <Row label="Risk">
          {template.riskLevel !== RiskLevel.UNSPECIFIED ? RISK_NAMES[template.riskLevel] : <span className="muted">as the policy registers the type</span>}
        </Row>
        <Row label="Producer">
          <span className="mono">{owner}</span>
        </Row>
        <Row label="Priority">{template.priority !== 0 && String(template.priority)}</Row>
        <Row label="Approval required">{template.approvalRequired && "yes, whatever the policy says"}</Row>
        <Row label="Max attempts">{template.maxAttempts > 0 && String(template.maxAttempts)}</Row>
        <Row label="Concurrency key">{template.concurrencyKey && `${template.concurrencyKey} (at most ${template.concurrencyLimit || 1} at a time)`}</Row>
        <Row label="Correlation id">{template.correlationId && <span className="mono">{template.correlationId}</span>}</Row>
        <Row label="Sources">{template.sourceRefs.join(", ")}</Row>
        <Row label="Rollback">{template.rollbackRef && <span className="mono">{template.rollbackRef}</span>}</Row>
      </dl>
      {hasKeys(template.payload) && (
        <section aria-labelledby="template-payload-heading">
          <h3 id="template-payload-heading">Payload</h3>
          {/* biome-ignore lint/a11y/noNoninteractiveTabindex: scrollable, so focusable for keyboard scrolling (axe scrollable-region-focusable); the enclosing section names it */}
          <pre tabIndex={0}>{prettyJson(template.payload)}</pre>
        </section>
      )}
    </>
  );
}

function TicksTable({ ticks }: { ticks: ScheduleTick[] }) {
  if (ticks.length === 0) return <p className="muted">No tick acted on yet.</p>;
  return (
    <div className="ops-table-wrap">
      <table className="ops-table schedule-ticks">
        <caption className="visually-hidden">Recent ticks, newest first, and the actions they enqueued</caption>
        <thead>
          <tr>
            <th scope="col">Tick</th>
            <th scope="col">Outcome</th>
            <th scope="col">Action</th>
            <th scope="col">Why no action</th>
            <th scope="col">Made by</th>
            <th scope="col">Recorded</th>
          </tr>
        </thead>
        <tbody>
          {ticks.map((tick) => (
            <tr key={`${tick.tickTime?.seconds}-${tick.tickTime?.nanos}`}>
              <th scope="row" className="ops-nowrap">
                <Instant at={tick.tickTime} />
              </th>
              <td>
                <OutcomeBadge tick={tick} />
              </td>
              <td className="ops-nowrap">
                {tick.actionId !== 0n ? (
                  <>
                    <ActionLink id={tick.actionId} /> {tick.actionStatus ? <StatusBadge status={tick.actionStatus} /> : null}
                  </>
                ) : (
                  <span className="muted">none</span>
                )}
              </td>
              <td className="ops-reason">{tick.reason}</td>
              <td>{tick.backfill ? "backfill" : "clock"}</td>
              <td className="ops-nowrap">
                <Instant at={tick.recordTime} />
              </td>
            </tr>
          ))}
        </tbody>
      </table>
    </div>
  );
}

/** How many pages of schedule events are read at most. */
const EVENT_PAGES = 5;

/** The schedule's own events. They carry no action id, so they are read by
 * type and picked by the schedule id in their payload. */
function useScheduleEvents(id: string) {
  return useQuery({
    queryKey: [...keys.schedule(id), "events"],
    queryFn: async () => {
      const found: Event[] = [];
      let afterId = 0n;
      for (let page = 0; page < EVENT_PAGES; page++) {
        const response = await api.listEvents({ afterId, eventTypes: [...SCHEDULE_EVENT_TYPES], pageSize: 1000 });
        found.push(...response.events.filter((event) => event.payload?.schedule_id === id));
        if (response.events.length < 1000 || response.nextAfterId === afterId) break;
        afterId = response.nextAfterId;
      }
      // An id is free again once its schedule is deleted: this schedule's
      // story starts at the id's latest schedule_created.
      const start = found.findLastIndex((event) => event.eventType === "schedule_created");
      return start > 0 ? found.slice(start) : found;
    },
  });
}

function ScheduleEvents({ id }: { id: string }) {
  const events = useScheduleEvents(id);
  if (events.isError) return <ErrorNotice error={events.error} prefix="The schedule's events could not be read" />;
  if (events.isPending) return <p className="muted">Loading…</p>;
  return <Timeline events={events.data} />;
}

/** "Paused by human:olga 3m ago: INC-77": who paused comes from the
 * schedule_paused event, since the schedule keeps only the reason. */
function PausedNotice({ schedule }: { schedule: Schedule }) {
  const events = useScheduleEvents(schedule.id);
  const paused = events.data?.findLast((event) => event.eventType === "schedule_paused");
  return (
    <p className="notice schedule-paused-notice" role="status">
      Paused
      {paused && (
        <>
          {" "}
          by <span className="mono">{paused.actor}</span> <When at={paused.createTime} />
        </>
      )}
      {schedule.pauseReason ? `: ${schedule.pauseReason}` : ""}. Its ticks pass without an action, and are not caught up on resume.
    </p>
  );
}
