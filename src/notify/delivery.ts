// One notification on the wire: its body (the standard JSON, or a Slack
// incoming-webhook message), signed the Standard Webhooks way, POSTed with
// a timeout. The event id is the webhook-id, the same on every retry, so a
// receiver can drop repeats.
import { toJson } from "@bufbuild/protobuf";
import { Webhook } from "standardwebhooks";
import { ActionSchema, EventSchema } from "../../gen/actionq/v1/action_pb.js";
import { actionToWire, eventToWire } from "../api/convert.js";
import type { ActionRow, EventRow } from "../store/rows.js";
import type { NotificationKind } from "./kinds.js";
import type { Endpoint } from "./webhooks-file.js";

export interface Notification {
  kind: NotificationKind;
  event: EventRow;
  action: ActionRow | null;
}

/** The standard body: `{type, timestamp, data: {event, action}}`, with the
 * event and action as the API's JSON shows them. */
export function standardBody({ kind, event, action }: Notification): unknown {
  return {
    type: kind,
    timestamp: event.created_at.toISOString(),
    data: {
      event: toJson(EventSchema, eventToWire(event)),
      action: action ? toJson(ActionSchema, actionToWire(action)) : null,
    },
  };
}

const text = (value: unknown) => (typeof value === "string" && value !== "" ? value : undefined);

/** One line a person reads in a channel. */
export function slackText({ kind, event, action }: Notification): string {
  const payload = event.payload;
  const about = action
    ? `action ${action.id} ${action.action_type}${action.target_ref ? ` on ${action.target_ref}` : ""}${action.project ? ` (project ${action.project})` : ""}`
    : "";
  const approvals = action ? ` (${action.approvers.length}/${action.approvals_required} approvals)` : "";
  const reason = text(payload.reason);
  switch (kind) {
    case "approval_requested":
      return `:hourglass: ${about} waits for approval: risk ${action?.risk_level ?? "?"}${approvals}, proposed by ${event.actor}`;
    case "approval_granted":
      return `:ballot_box_with_check: ${event.actor} approved ${about}${approvals}`;
    case "action_approved":
      return `:white_check_mark: ${about} is approved (last approval by ${event.actor})`;
    case "action_rejected":
      return `:no_entry: ${event.actor} rejected ${about}${reason ? `: ${reason}` : ""}`;
    case "approval_expired":
      return `:alarm_clock: ${about} was not approved in time${approvals}; it will not run`;
    case "attempt_failed":
      return `:warning: ${about} failed attempt ${String(payload.attempt ?? "?")}${reason ? `: ${reason}` : ""}; retry at ${String(payload.run_after ?? "?")}`;
    case "action_failed":
      return `:x: ${about} failed for good${reason ? `: ${reason}` : ""}`;
    case "paused":
      return `:double_vertical_bar: ${event.actor} paused ${JSON.stringify(payload.scope ?? {})}${reason ? `: ${reason}` : ""}`;
    case "resumed":
      return `:arrow_forward: ${event.actor} resumed ${JSON.stringify(payload.scope ?? {})}`;
    case "policy_reloaded":
      return `:scroll: policy ${String(payload.to ?? "?")} is in force (was ${String(payload.from ?? "?")}), by ${event.actor}`;
    case "break_glass":
      return `:rotating_light: ${event.actor} broke glass on ${about}${reason ? `: ${reason}` : ""}`;
  }
}

export function bodyFor(endpoint: Endpoint, notification: Notification): string {
  return JSON.stringify(endpoint.format === "slack" ? { text: `actionq: ${slackText(notification)}` } : standardBody(notification));
}

export type Outcome = { ok: true; status: number } | { ok: false; status: number | null; error: string; timedOut: boolean };

const signers = new WeakMap<Endpoint, Webhook>();

/** POSTs one notification. 2xx is delivered; anything else, a network
 * error or the endpoint's timeout is a failure to retry. `stop` aborts it
 * at shutdown. */
export async function send(endpoint: Endpoint, notification: Notification, stop: AbortSignal): Promise<Outcome> {
  let signer = signers.get(endpoint);
  if (!signer) {
    signer = new Webhook(endpoint.secret);
    signers.set(endpoint, signer);
  }
  const body = bodyFor(endpoint, notification);
  const id = notification.event.id;
  const now = new Date();
  const timeout = AbortSignal.timeout(endpoint.timeoutMs);
  try {
    const response = await fetch(endpoint.url, {
      method: "POST",
      headers: {
        "content-type": "application/json",
        "user-agent": "actionq-webhooks",
        "webhook-id": id,
        "webhook-timestamp": String(Math.floor(now.getTime() / 1000)),
        "webhook-signature": signer.sign(id, now, body),
      },
      body,
      redirect: "manual",
      signal: AbortSignal.any([timeout, stop]),
    });
    // The answer's body is not read: drop it so the connection is reused.
    await response.body?.cancel().catch(() => {});
    if (response.status >= 200 && response.status < 300) return { ok: true, status: response.status };
    return { ok: false, status: response.status, error: `HTTP ${response.status}`, timedOut: false };
  } catch (error) {
    const timedOut = timeout.aborted;
    const cause = (error as Error & { cause?: Error }).cause;
    const message = timedOut ? `no answer within ${endpoint.timeoutMs} ms` : (cause?.message ?? (error as Error).message);
    return { ok: false, status: null, error: message, timedOut };
  }
}
