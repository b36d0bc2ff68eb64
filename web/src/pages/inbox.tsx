// The approval inbox: the PENDING actions this person may approve (not
// their own, not already approved by them; the server narrows the list to
// their scope), riskiest first, then oldest. Each row says enough to
// triage without opening it; the row's link opens the review.
import { useQuery } from "@tanstack/react-query";
import { useEffect, useState } from "react";
import { Link } from "wouter";
import { type Action, ActionStatus, RiskLevel } from "../../../gen/actionq/v1/action_pb.js";
import { api } from "../api.js";
import { ActionLink, ErrorNotice, RiskBadge } from "../components/badges.js";
import { ExpiryText, Quorum } from "../components/review-decision.js";
import { clip, isoTime, span, toDate } from "../format.js";
import { type Me, can, useMe } from "../identity.js";
import { keys } from "../live.js";
import "./action-review.css";
import "./inbox.css";

const PAGE_SIZE = 500;
/** More than a person can review; past it the page says the list is cut. */
const MAX_LISTED = 5_000;

interface InboxData {
  actions: Action[];
  /** True when more PENDING actions exist than were read. */
  capped: boolean;
}

async function readPending(signal: AbortSignal): Promise<InboxData> {
  const actions: Action[] = [];
  let pageToken = "";
  for (;;) {
    const page = await api.listActions({ statuses: [ActionStatus.PENDING], pageSize: PAGE_SIZE, pageToken }, { signal });
    actions.push(...page.actions);
    pageToken = page.nextPageToken;
    if (pageToken === "") return { actions, capped: false };
    if (actions.length >= MAX_LISTED) return { actions, capped: true };
  }
}

const RISK_ORDER: Record<RiskLevel, number> = {
  [RiskLevel.DANGEROUS]: 0,
  [RiskLevel.GUARDED]: 1,
  [RiskLevel.SAFE]: 2,
  [RiskLevel.UNSPECIFIED]: 2,
};

function millis(action: Action): number {
  return toDate(action.createTime)?.getTime() ?? 0;
}

/** What this person may approve, riskiest first, then oldest. */
export function reviewable(actions: readonly Action[], me: Me): Action[] {
  return actions
    .filter((action) => action.createdBy !== me.name && !action.approvers.includes(me.name))
    .sort((a, b) => RISK_ORDER[a.riskLevel] - RISK_ORDER[b.riskLevel] || millis(a) - millis(b) || Number(a.id - b.id));
}

/** Re-renders every `ms` so that waited times and expiries stay true. */
function useNow(ms: number): number {
  const [now, setNow] = useState(Date.now);
  useEffect(() => {
    const timer = setInterval(() => setNow(Date.now()), ms);
    return () => clearInterval(timer);
  }, [ms]);
  return now;
}

export function InboxPage() {
  const me = useMe();
  if (!can(me, "approver")) {
    return (
      <>
        <h1>Approval inbox</h1>
        <p className="notice">
          The inbox lists actions waiting for an approval. You are signed in as <span className="mono">{me.name}</span>, who does not have the approver role, so
          nothing here waits for you. You can still read every action on the <Link href="/actions">Actions</Link> page.
        </p>
      </>
    );
  }
  if (!can(me, "viewer")) {
    return (
      <>
        <h1>Approval inbox</h1>
        <p className="notice">
          You are an approver, but reading actions needs the viewer role too, and <span className="mono">{me.name}</span> does not have it. Ask whoever manages
          this server’s principals to add it, so you can see what you approve.
        </p>
      </>
    );
  }
  return <Inbox me={me} />;
}

function Inbox({ me }: { me: Me }) {
  const query = useQuery({ queryKey: [...keys.inbox, me.name], queryFn: ({ signal }) => readPending(signal) });
  const now = useNow(15_000);
  const rows = query.data ? reviewable(query.data.actions, me) : [];

  return (
    <div className="inbox">
      <h1>
        Approval inbox{" "}
        {query.data && (
          <span className="inbox-count">
            {rows.length}
            <span className="visually-hidden"> waiting for you</span>
          </span>
        )}
      </h1>
      <p className="muted">Actions waiting for your approval: riskiest first, then the longest waiting. Open one to review it.</p>
      {query.isError && <ErrorNotice error={query.error} prefix="The inbox could not be read" />}
      {query.isPending && <p aria-busy="true">Loading…</p>}
      {query.data?.capped && (
        <p className="notice" role="status">
          More than {MAX_LISTED.toLocaleString("en")} actions are pending; only the newest {query.data.actions.length.toLocaleString("en")} were read, so older
          ones are not listed here. Narrow the work on the Actions page.
        </p>
      )}
      {query.data && rows.length === 0 && <p className="notice inbox-empty">Nothing waits for your approval. New proposals appear here as they arrive.</p>}
      {rows.length > 0 && (
        <div className="table-scroll">
          <table className="inbox-table">
            <caption className="visually-hidden">Pending actions you may approve</caption>
            <thead>
              <tr>
                <th scope="col">Risk</th>
                <th scope="col">Action</th>
                <th scope="col">Target</th>
                <th scope="col">Node / service</th>
                <th scope="col">Project</th>
                <th scope="col" className="num">
                  Confidence
                </th>
                <th scope="col">Producer</th>
                <th scope="col">Waiting</th>
                <th scope="col">Approval expires</th>
                <th scope="col">Approvals</th>
              </tr>
            </thead>
            <tbody>
              {rows.map((action) => (
                <InboxRow key={action.id.toString()} action={action} now={now} />
              ))}
            </tbody>
          </table>
        </div>
      )}
    </div>
  );
}

function InboxRow({ action, now }: { action: Action; now: number }) {
  const created = toDate(action.createTime);
  const where = [action.node, action.service].filter(Boolean).join(" / ");
  return (
    <tr className={action.riskLevel === RiskLevel.DANGEROUS ? "row-dangerous" : undefined}>
      <td>
        <RiskBadge risk={action.riskLevel} />
      </td>
      <th scope="row" className="inbox-action">
        <ActionLink id={action.id}>
          <span className="mono">{action.actionType}</span>
        </ActionLink>{" "}
        <span className="muted mono">#{action.id.toString()}</span>
      </th>
      <td className="mono" title={action.targetRef}>
        {clip(action.targetRef, 48) || <span className="muted">—</span>}
      </td>
      <td className="mono" title={where}>
        {clip(where, 40) || <span className="muted">—</span>}
      </td>
      <td className="mono">{action.project || <span className="muted">—</span>}</td>
      <td className="num">{action.confidence !== undefined ? action.confidence.toFixed(2) : <span className="muted">—</span>}</td>
      <td className="mono">{action.createdBy}</td>
      <td>
        {created ? (
          <time dateTime={isoTime(created)} title={isoTime(created)}>
            {span(now - created.getTime())}
          </time>
        ) : (
          "—"
        )}
      </td>
      <td>
        <ExpiryText action={action} now={now} />
      </td>
      <td>
        <Quorum approvers={action.approvers.length} required={action.approvalsRequired} />
        {action.approvalRequirements.length > 0 && action.approvalsNeeded && <div className="approvals-needed-short">{action.approvalsNeeded}</div>}
      </td>
    </tr>
  );
}
