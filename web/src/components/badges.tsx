// Small pieces every page shows the same way.
import type { ReactNode } from "react";
import { Link } from "wouter";
import { type ActionStatus, RiskLevel } from "../../../gen/actionq/v1/action_pb.js";
import { errorReason, errorText } from "../api.js";
import { RISK_NAMES, STATUS_NAMES, isoTime, relative } from "../format.js";
import type { Timestamp } from "@bufbuild/protobuf/wkt";

export function StatusBadge({ status }: { status: ActionStatus }) {
  const name = STATUS_NAMES[status];
  return <span className={`badge status-${name}`}>{name}</span>;
}

export function RiskBadge({ risk }: { risk: RiskLevel }) {
  const name = RISK_NAMES[risk] ?? RISK_NAMES[RiskLevel.SAFE];
  return <span className={`badge risk-${name}`}>{name}</span>;
}

/** A link to an action's page, by id. */
export function ActionLink({ id, children }: { id: bigint; children?: ReactNode }) {
  return <Link href={`/actions/${id}`}>{children ?? `#${id}`}</Link>;
}

/** An instant as "3m ago", with the exact time on hover and for machines. */
export function When({ at }: { at: Timestamp | undefined }) {
  if (!at) return <span className="muted">—</span>;
  const iso = isoTime(at);
  return (
    <time dateTime={iso} title={iso}>
      {relative(at)}
    </time>
  );
}

/** A failed call, worded as the server worded it, with its reason code. */
export function ErrorNotice({ error, prefix }: { error: unknown; prefix?: string }) {
  if (!error) return null;
  const reason = errorReason(error);
  return (
    <p className="notice error" role="alert">
      {prefix ? `${prefix}: ` : ""}
      {errorText(error)}
      {reason && <span className="muted mono"> ({reason})</span>}
    </p>
  );
}
