// The claims and attempts of an action, read from its events: who claimed
// it, when, until when the lease ran, and how each claim ended.
import type { Timestamp } from "@bufbuild/protobuf/wkt";
import type { Event } from "../../../gen/actionq/v1/action_pb.js";
import { Instant } from "./timeline.js";
import { instantText, text } from "./timeline-facts.js";

export interface ClaimStory {
  eventId: bigint;
  attempt: string | undefined;
  worker: string;
  claimedAt: Timestamp | undefined;
  /** The latest lease deadline: from the claim, or its last extension. */
  leaseUntil: string | undefined;
  extensions: number;
  /** How it ended; undefined while the claim is held. */
  ending: { how: string; detail: string | undefined; at: Timestamp | undefined } | undefined;
}

/** Each event that ends a claim, and how a person says it. */
function ending(event: Event): { how: string; detail: string | undefined } | undefined {
  const payload = event.payload ?? {};
  switch (event.eventType) {
    case "action_completed":
      return { how: "completed", detail: text(payload.result_ref) };
    case "action_failed":
      return { how: "failed", detail: text(payload.reason) };
    case "action_retry_scheduled":
      return { how: "failed, retry scheduled", detail: text(payload.reason) };
    case "claim_released":
      return { how: "released", detail: text(payload.reason) };
    case "claim_timed_out":
      return { how: "timed out", detail: instantText(payload.claim_deadline) && `lease ran out at ${instantText(payload.claim_deadline)}` };
    case "action_rejected":
      return payload.from_status === "claimed" ? { how: "rejected by the worker", detail: text(payload.reason) } : undefined;
    case "action_cancelled":
      return payload.from_status === "claimed" ? { how: "cancelled", detail: text(payload.reason) } : undefined;
    default:
      return undefined;
  }
}

export function claimsOf(events: readonly Event[]): ClaimStory[] {
  const claims: ClaimStory[] = [];
  let open: ClaimStory | undefined;
  for (const event of events) {
    const payload = event.payload ?? {};
    if (event.eventType === "action_claimed") {
      open = {
        eventId: event.id,
        attempt: text(payload.attempt),
        worker: event.actor,
        claimedAt: event.createTime,
        leaseUntil: instantText(payload.claim_deadline),
        extensions: 0,
        ending: undefined,
      };
      claims.push(open);
      continue;
    }
    if (!open) continue;
    if (event.eventType === "claim_extended") {
      open.leaseUntil = instantText(payload.claim_deadline) ?? open.leaseUntil;
      open.extensions += 1;
      continue;
    }
    const end = ending(event);
    if (end) {
      open.ending = { ...end, at: event.createTime };
      open = undefined;
    }
  }
  return claims;
}

export function ClaimsTable({ events }: { events: readonly Event[] }) {
  const claims = claimsOf(events);
  if (claims.length === 0) return <p className="muted">No worker has claimed this action.</p>;
  return (
    <table className="claims-table">
      <thead>
        <tr>
          <th scope="col">Attempt</th>
          <th scope="col">Worker</th>
          <th scope="col">Claimed</th>
          <th scope="col">Lease until</th>
          <th scope="col">How it ended</th>
        </tr>
      </thead>
      <tbody>
        {claims.map((claim) => (
          <tr key={claim.eventId.toString()}>
            <td className="num">{claim.attempt ?? "—"}</td>
            <td className="mono">{claim.worker}</td>
            <td>
              <Instant at={claim.claimedAt} />
            </td>
            <td className="mono">
              {claim.leaseUntil ?? "—"}
              {claim.extensions > 0 && <span className="muted"> (extended {claim.extensions}×)</span>}
            </td>
            <td>
              {claim.ending ? (
                <>
                  <strong>{claim.ending.how}</strong>
                  {claim.ending.detail && <span>: {claim.ending.detail}</span>}
                </>
              ) : (
                <span>held now</span>
              )}
            </td>
          </tr>
        ))}
      </tbody>
    </table>
  );
}
