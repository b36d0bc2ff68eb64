// One action on one screen, for a reviewer under pressure: what it does and
// to what, its risk and status first; then the policy's decision, the
// approvals so far and the controls the person's roles allow; then the
// payload and its rollback plan side by side, the lineage, the whole
// timeline, the claims, and every field. It refreshes when the action's
// events arrive (keys.action).
import { useQuery } from "@tanstack/react-query";
import { Link } from "wouter";
import { type Action, ActionStatus, RiskLevel } from "../../../gen/actionq/v1/action_pb.js";
import type { ConcurrencyHold } from "../../../gen/actionq/v1/action_queue_service_pb.js";
import { Code, api, errorCode } from "../api.js";
import { ActionLink, ErrorNotice, RiskBadge, StatusBadge, When } from "../components/badges.js";
import { Decision } from "../components/review-decision.js";
import { ReviewControls } from "../components/review-panel.js";
import { Timeline } from "../components/timeline.js";
import { ClaimsTable } from "../components/timeline-claims.js";
import { supersededBy } from "../components/timeline-facts.js";
import { isoTime, prettyJson } from "../format.js";
import { keys } from "../live.js";
import { ActionFields } from "./action-fields.js";
import "./action-review.css";
import "./action.css";

const ID_PATTERN = /^[1-9]\d{0,18}$/;

export function ActionPage({ id }: { id: string }) {
  if (!ID_PATTERN.test(id)) {
    return (
      <>
        <h1>No such action</h1>
        <p className="notice error" role="alert">
          “{id}” is not an action id: ids are positive whole numbers, like 42.
        </p>
        <p>
          <Link href="/actions">See all actions</Link>
        </p>
      </>
    );
  }
  return <ActionView id={BigInt(id)} />;
}

function ActionView({ id }: { id: bigint }) {
  const query = useQuery({ queryKey: keys.action(id), queryFn: () => api.getAction({ id }) });

  if (query.isPending) {
    return (
      <div aria-busy="true">
        <h1>Action #{id.toString()}</h1>
        <p className="muted">Loading…</p>
      </div>
    );
  }
  if (query.isError) {
    const notFound = errorCode(query.error) === Code.NotFound;
    return (
      <>
        <h1>{notFound ? `No action #${id}` : `Action #${id}`}</h1>
        {notFound ? (
          <p className="notice error" role="alert">
            The server has no action #{id.toString()}. It may never have existed, or it was archived and is out of reach of this console.
          </p>
        ) : (
          <ErrorNotice error={query.error} prefix="The action could not be read" />
        )}
        <p>
          <Link href="/actions">See all actions</Link>
        </p>
      </>
    );
  }
  const { action, events, concurrencyHold, windowHold } = query.data;
  if (!action) return <ErrorNotice error={new Error("the server answered without the action")} />;
  return (
    <article className="action-page">
      <ActionHeader action={action} />
      {action.scheduleId && (
        <p className="notice scheduled-by">
          Scheduled by <Link href={`/schedules/${encodeURIComponent(action.scheduleId)}`}>{action.scheduleId}</Link> at tick{" "}
          <time dateTime={isoTime(action.scheduleTickTime)}>{isoTime(action.scheduleTickTime)}</time>
        </p>
      )}
      {concurrencyHold && <HoldNotice hold={concurrencyHold} />}
      {windowHold && (
        <p className="notice" role="status">
          Held by change window <strong>{windowHold.windowName}</strong> until{" "}
          <time dateTime={isoTime(windowHold.untilTime)}>{isoTime(windowHold.untilTime)}</time>: workers may claim it once the window opens, or at once if an
          operator breaks glass (<code>actionctl break-glass</code>).
        </p>
      )}
      {action.breakGlassBy && (
        <p className="notice" role="status">
          Glass broken by <strong>{action.breakGlassBy}</strong> at <time dateTime={isoTime(action.breakGlassTime)}>{isoTime(action.breakGlassTime)}</time>:{" "}
          {action.breakGlassReason}
        </p>
      )}
      <div className="action-layout">
        <div className="action-main">
          <section className={`panel review-panel${action.riskLevel === RiskLevel.DANGEROUS ? " review-dangerous" : ""}`} aria-labelledby="review-heading">
            <h2 id="review-heading">{action.status === ActionStatus.PENDING ? "Review" : "Decision"}</h2>
            <Decision action={action} events={events} />
            <ReviewControls key={action.id.toString()} action={action} />
          </section>
          <section aria-labelledby="payload-heading">
            <h2 id="payload-heading">Payload</h2>
            {/* biome-ignore lint/a11y/noNoninteractiveTabindex: scrollable, so focusable for keyboard scrolling (axe scrollable-region-focusable); the enclosing section names it */}
            <pre tabIndex={0}>{prettyJson(action.payload ?? {})}</pre>
          </section>
          <section aria-labelledby="rollback-heading">
            <h2 id="rollback-heading">Rollback plan</h2>
            {action.rollbackRef ? (
              <>
                <p>
                  Undone by <code>{action.rollbackRef}</code>
                  {action.rollbackPayload ? " with this payload:" : " (no payload)."}
                </p>
                {action.rollbackPayload && (
                  // biome-ignore lint/a11y/noNoninteractiveTabindex: scrollable, so focusable for keyboard scrolling (axe scrollable-region-focusable); the enclosing section names it
                  <pre tabIndex={0}>{prettyJson(action.rollbackPayload)}</pre>
                )}
              </>
            ) : (
              <p className="notice">No rollback plan: the producer named no reverse action. If this goes wrong, it must be undone by hand.</p>
            )}
          </section>
          <Outcome action={action} />
          <Lineage action={action} superseder={supersededBy(events)} />
        </div>
        <section className="action-side" aria-labelledby="timeline-heading">
          <h2 id="timeline-heading">Timeline</h2>
          <Timeline events={events} />
        </section>
      </div>
      <section aria-labelledby="claims-heading">
        <h2 id="claims-heading">Claims and attempts</h2>
        <ClaimsTable events={events} />
      </section>
      <section aria-labelledby="fields-heading">
        <h2 id="fields-heading">All fields</h2>
        <ActionFields action={action} />
      </section>
    </article>
  );
}

/** An approved action that waits for its concurrency key, and for whom. */
function HoldNotice({ hold }: { hold: ConcurrencyHold }) {
  return (
    <p className="notice concurrency-hold" role="status">
      Waits for its concurrency key <code>{hold.key}</code> (at most {hold.limit} at a time)
      {hold.ahead > 0n ? `, behind ${hold.ahead} earlier action${hold.ahead === 1n ? "" : "s"} of the key` : ""}.{" "}
      {hold.holderIds.length === 0 ? (
        "None of the key's actions is running now."
      ) : (
        <>
          Running now:{" "}
          {hold.holderIds.map((id, index) => (
            <span key={id.toString()}>
              {index > 0 && ", "}
              <ActionLink id={id} />
            </span>
          ))}
          .
        </>
      )}
    </p>
  );
}

function ActionHeader({ action }: { action: Action }) {
  const where = [action.node, action.service].filter(Boolean).join(" / ");
  return (
    <header className="action-head">
      <p className="action-eyebrow">
        <span className="mono">#{action.id.toString()}</span> <StatusBadge status={action.status} /> <RiskBadge risk={action.riskLevel} />
        {action.confidence !== undefined && <span className="muted"> confidence {action.confidence.toFixed(2)}</span>}
      </p>
      <h1>
        <span className="mono">{action.actionType}</span>
        {action.targetRef && (
          <>
            {" "}
            <span className="action-on">on</span> <span className="mono action-target">{action.targetRef}</span>
          </>
        )}
      </h1>
      <p className="action-sub">
        {where && (
          <span>
            <span className="muted">where </span>
            <span className="mono">{where}</span>
          </span>
        )}
        {action.project && (
          <span>
            <span className="muted">project </span>
            <span className="mono">{action.project}</span>
          </span>
        )}
        <span>
          <span className="muted">proposed by </span>
          <span className="mono">{action.createdBy}</span> <When at={action.createTime} />
        </span>
      </p>
    </header>
  );
}

function Outcome({ action }: { action: Action }) {
  if (!action.resultRef && !action.failureReason && !action.lastError) return null;
  return (
    <section aria-labelledby="outcome-heading">
      <h2 id="outcome-heading">Outcome</h2>
      <dl className="fields">
        {action.resultRef && (
          <>
            <dt>Result</dt>
            <dd className="mono">{action.resultRef}</dd>
          </>
        )}
        {action.failureReason && (
          <>
            <dt>Why it did not complete</dt>
            <dd>{action.failureReason}</dd>
          </>
        )}
        {action.lastError && (
          <>
            <dt>Last error</dt>
            <dd>{action.lastError}</dd>
          </>
        )}
      </dl>
    </section>
  );
}

function Lineage({ action, superseder }: { action: Action; superseder: bigint | undefined }) {
  const children = useQuery({
    // Under keys.actions: a new child is an event about the child, which refreshes lists.
    queryKey: [...keys.actions, "children", action.id.toString()],
    queryFn: () => api.listActions({ parentId: action.id, pageSize: 200 }),
  });
  const kids = children.data?.actions ?? [];
  return (
    <section aria-labelledby="lineage-heading">
      <h2 id="lineage-heading">Lineage</h2>
      <dl className="fields">
        <dt>Parent</dt>
        <dd>{action.parentId !== 0n ? <ActionLink id={action.parentId} /> : <span className="muted">none: a root action</span>}</dd>
        {action.rollbackOfId !== 0n && (
          <>
            <dt>Rolls back</dt>
            <dd>
              <ActionLink id={action.rollbackOfId} />
            </dd>
          </>
        )}
        <dt>Supersedes</dt>
        <dd>{action.supersedesId !== 0n ? <ActionLink id={action.supersedesId} /> : <span className="muted">nothing</span>}</dd>
        {superseder !== undefined && (
          <>
            <dt>Superseded by</dt>
            <dd>
              <ActionLink id={superseder} />
            </dd>
          </>
        )}
        <dt>Children</dt>
        <dd>
          {children.isError ? (
            <ErrorNotice error={children.error} prefix="Children could not be listed" />
          ) : kids.length === 0 ? (
            <span className="muted">{children.isPending ? "…" : "none"}</span>
          ) : (
            <ul className="children">
              {kids.map((child) => (
                <li key={child.id.toString()}>
                  <ActionLink id={child.id} /> <span className="mono">{child.actionType}</span> <StatusBadge status={child.status} />
                  {child.rollbackOfId === action.id && <span className="badge rollback-badge">rollback</span>}
                </li>
              ))}
              {children.data?.nextPageToken && <li className="muted">and more (the first {kids.length} are shown)</li>}
            </ul>
          )}
        </dd>
      </dl>
    </section>
  );
}
