// An action's story: every event, oldest first, in words, with who did it,
// when (relative and exact) and its details as text.
import type { Timestamp } from "@bufbuild/protobuf/wkt";
import type { Event } from "../../../gen/actionq/v1/action_pb.js";
import { isoTime, relative } from "../format.js";
import { eventFacts, eventWords } from "./timeline-facts.js";

/** "3m ago · 2026-11-23T10:00:00Z": both, since a reviewer compares instants. */
export function Instant({ at }: { at: Timestamp | undefined }) {
  if (!at) return <span className="muted">—</span>;
  const iso = isoTime(at);
  return (
    <time dateTime={iso}>
      {relative(at)} <span className="muted mono">· {iso}</span>
    </time>
  );
}

/** Tone of an event's marker: what went wrong stands out, what went right is calm. */
function tone(eventType: string): string {
  switch (eventType) {
    case "action_rejected":
    case "action_failed":
    case "action_cancelled":
    case "claim_timed_out":
      return "bad";
    case "action_approved":
    case "approval_granted":
    case "action_completed":
      return "good";
    case "action_retry_scheduled":
    case "claim_released":
      return "warn";
    default:
      return "plain";
  }
}

export function Timeline({ events }: { events: readonly Event[] }) {
  if (events.length === 0) return <p className="muted">No events.</p>;
  return (
    <ol className="timeline action-timeline">
      {events.map((event) => {
        const facts = eventFacts(event);
        return (
          <li key={event.id.toString()} className={`tone-${tone(event.eventType)}`}>
            <div className="timeline-head">
              <strong>{eventWords(event.eventType)}</strong>
              {event.actor && (
                <span>
                  {" "}
                  by <span className="mono">{event.actor}</span>
                </span>
              )}
              <span className="timeline-when">
                {" "}
                <Instant at={event.createTime} />
              </span>
            </div>
            {facts.length > 0 && (
              <dl className="timeline-facts">
                {facts.map((f) => (
                  <div key={f.label}>
                    <dt>{f.label}</dt>
                    <dd>{f.value}</dd>
                  </div>
                ))}
              </dl>
            )}
          </li>
        );
      })}
    </ol>
  );
}
