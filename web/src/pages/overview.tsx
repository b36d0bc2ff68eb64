// The queue at a glance for the person on call: how much waits and for how
// long, what is paused and why, how actions spread over types and
// statuses, the webhook endpoints that are behind, and for operators the
// kill switch. GetQueueStats is refreshed by events (keys.stats); the
// pauses come from the banner's answer (usePauses), so a pause made
// elsewhere shows here at once and always agrees with the banner.
import { useQuery } from "@tanstack/react-query";
import type { ReactNode } from "react";
import { Link } from "wouter";
import { ActionStatus } from "../../../gen/actionq/v1/action_pb.js";
import type { GetQueueStatsResponse } from "../../../gen/actionq/v1/action_queue_service_pb.js";
import { api } from "../api.js";
import { ActionLink, ErrorNotice } from "../components/badges.js";
import { KillSwitch } from "../components/ops-kill-switch.js";
import { PausesTable } from "../components/ops-pauses.js";
import { STATUSES, STATUS_NAMES, durationMs, span } from "../format.js";
import { can, useMe } from "../identity.js";
import { keys, usePauses } from "../live.js";
import "../components/ops-shared.css";
import "./overview.css";

export function OverviewPage() {
  const me = useMe();
  const stats = useQuery({ queryKey: keys.stats, queryFn: () => api.getQueueStats({}) });
  const pauses = usePauses();
  const data = stats.data;
  const knownTypes = [...new Set((data?.counts ?? []).map((c) => c.actionType))].sort();
  return (
    <div className="ops-overview">
      <h1>Overview</h1>
      <ErrorNotice error={stats.error} prefix="The queue's numbers could not be loaded" />
      {stats.isPending && <p aria-busy="true">Loading the queue's numbers…</p>}
      {data && <Headline stats={data} />}

      <section aria-labelledby="pauses-heading">
        <h2 id="pauses-heading">Pauses in force</h2>
        {pauses.data && <PausesTable pauses={pauses.data} />}
      </section>

      {data && data.heldKeys.length > 0 && (
        <section aria-labelledby="held-keys-heading">
          <h2 id="held-keys-heading">Held back by concurrency keys</h2>
          <HeldKeysTable stats={data} />
        </section>
      )}

      <section aria-labelledby="kill-switch-heading" className="ops-kill-switch-section">
        <h2 id="kill-switch-heading">Kill switch</h2>
        {can(me, "operator") ? (
          <KillSwitch knownTypes={knownTypes} />
        ) : (
          <p className="muted">Pausing and resuming need the operator role; you see the pauses above as they happen.</p>
        )}
      </section>

      <section aria-labelledby="counts-heading">
        <h2 id="counts-heading">Actions by type and status</h2>
        {data && <CountsTable stats={data} />}
      </section>

      {data && data.webhooks.length > 0 && (
        <section aria-labelledby="webhooks-heading">
          <h2 id="webhooks-heading">Webhooks</h2>
          <WebhooksTable stats={data} />
        </section>
      )}
    </div>
  );
}

function total(stats: GetQueueStatsResponse, status: ActionStatus): bigint {
  return stats.counts.filter((c) => c.status === status).reduce((sum, c) => sum + c.count, 0n);
}

/** One headline number, linking to the actions it counts. */
function Tile({ label, count, href, tone, children }: { label: string; count: bigint; href: string; tone?: "warn" | "bad" | undefined; children?: ReactNode }) {
  return (
    <div className={tone ? `ops-tile ops-${tone}` : "ops-tile"}>
      <dt>{label}</dt>
      <dd>
        <Link href={href} className="ops-big">
          {count.toString()}
        </Link>
        {children}
      </dd>
    </div>
  );
}

function Headline({ stats }: { stats: GetQueueStatsResponse }) {
  const oldest = durationMs(stats.oldestClaimableAge);
  const failed = total(stats, ActionStatus.FAILED);
  return (
    <dl className="ops-headline">
      <Tile
        label="Claimable backlog"
        count={stats.claimable}
        href="/actions?status=approved"
        tone={stats.claimable > 0n && oldest !== undefined && oldest > 5 * 60_000 ? "warn" : undefined}
      >
        <span className="muted"> {oldest === undefined ? "nothing waits for a worker" : `oldest waiting ${span(oldest)}`}</span>
      </Tile>
      <Tile label="Waiting for approval" count={total(stats, ActionStatus.PENDING)} href="/actions?status=pending" />
      <Tile label="Claimed by workers" count={total(stats, ActionStatus.CLAIMED)} href="/actions?status=claimed" />
      <Tile label="Failed (dead letter)" count={failed} href="/actions?status=failed" tone={failed > 0n ? "bad" : undefined} />
      <div className="ops-tile">
        <dt>Policy version</dt>
        <dd>
          <Link href="/policy" className="mono">
            {stats.policyVersion}
          </Link>
        </dd>
      </div>
    </dl>
  );
}

/** Keys whose approved actions wait for a free slot, and who holds them. */
function HeldKeysTable({ stats }: { stats: GetQueueStatsResponse }) {
  return (
    <div className="ops-table-wrap">
      <table className="ops-table">
        <caption className="visually-hidden">Concurrency keys with approved actions waiting for a free slot</caption>
        <thead>
          <tr>
            <th scope="col">Key</th>
            <th scope="col" className="num">
              Waiting
            </th>
            <th scope="col" className="num">
              Limit
            </th>
            <th scope="col">Running now</th>
          </tr>
        </thead>
        <tbody>
          {stats.heldKeys.map((held) => (
            <tr key={held.key}>
              <td className="mono">{held.key}</td>
              <td className="num">{held.waiting.toString()}</td>
              <td className="num">{held.limit}</td>
              <td>
                {held.holderIds.length === 0
                  ? "none"
                  : held.holderIds.map((id, index) => (
                      <span key={id.toString()}>
                        {index > 0 && ", "}
                        <ActionLink id={id} />
                      </span>
                    ))}
              </td>
            </tr>
          ))}
        </tbody>
      </table>
    </div>
  );
}

/** Each endpoint of the server's webhooks file: what it has not been sent
 * yet, and whether it is failing (it is retried until it takes them). */
function WebhooksTable({ stats }: { stats: GetQueueStatsResponse }) {
  return (
    <div className="ops-table-wrap">
      <table className="ops-table">
        <caption className="visually-hidden">Webhook endpoints and what they have not been sent yet</caption>
        <thead>
          <tr>
            <th scope="col">Endpoint</th>
            <th scope="col" className="num">
              Not sent yet
            </th>
            <th scope="col">Oldest waiting</th>
            <th scope="col">State</th>
          </tr>
        </thead>
        <tbody>
          {stats.webhooks.map((hook) => {
            const oldest = durationMs(hook.oldestPendingAge);
            return (
              <tr key={hook.endpoint}>
                <th scope="row" className="mono">
                  {hook.endpoint}
                </th>
                <td className="num">{hook.pending.toString()}</td>
                <td>{oldest === undefined ? <span className="muted">—</span> : span(oldest)}</td>
                <td className={hook.consecutiveFailures > 0 ? "error" : undefined}>
                  {hook.consecutiveFailures > 0
                    ? `failing: ${hook.consecutiveFailures} attempt${hook.consecutiveFailures === 1 ? "" : "s"} in a row, last ${hook.lastError}`
                    : "delivering"}
                </td>
              </tr>
            );
          })}
        </tbody>
      </table>
    </div>
  );
}

/** Types as rows, statuses as columns, each count a link to those actions. */
function CountsTable({ stats }: { stats: GetQueueStatsResponse }) {
  if (stats.counts.length === 0) return <p className="muted">The queue has no actions yet.</p>;
  const byType = new Map<string, Map<ActionStatus, bigint>>();
  for (const { actionType, status, count } of stats.counts) {
    const row = byType.get(actionType) ?? new Map<ActionStatus, bigint>();
    row.set(status, (row.get(status) ?? 0n) + count);
    byType.set(actionType, row);
  }
  const types = [...byType.keys()].sort();
  const cell = (type: string | undefined, status: ActionStatus | undefined, count: bigint) => {
    if (count === 0n) return <span className="muted">0</span>;
    const query = new URLSearchParams();
    if (status !== undefined) query.set("status", STATUS_NAMES[status]);
    if (type !== undefined) query.set("type", type);
    return <Link href={`/actions?${query.toString()}`}>{count.toString()}</Link>;
  };
  const sum = (values: Iterable<bigint>) => [...values].reduce((a, b) => a + b, 0n);
  return (
    <div className="ops-table-wrap">
      <table className="ops-table ops-counts">
        <caption className="visually-hidden">Number of actions of each type in each status</caption>
        <thead>
          <tr>
            <th scope="col">Action type</th>
            {STATUSES.map((status) => (
              <th scope="col" key={status} className="num">
                {STATUS_NAMES[status]}
              </th>
            ))}
            <th scope="col" className="num">
              Total
            </th>
          </tr>
        </thead>
        <tbody>
          {types.map((type) => {
            const row = byType.get(type)!;
            return (
              <tr key={type}>
                <th scope="row" className="mono">
                  {type}
                </th>
                {STATUSES.map((status) => (
                  <td key={status} className="num">
                    {cell(type, status, row.get(status) ?? 0n)}
                  </td>
                ))}
                <td className="num">{cell(type, undefined, sum(row.values()))}</td>
              </tr>
            );
          })}
        </tbody>
        <tfoot>
          <tr>
            <th scope="row">All types</th>
            {STATUSES.map((status) => (
              <td key={status} className="num">
                {cell(undefined, status, total(stats, status))}
              </td>
            ))}
            <td className="num">{cell(undefined, undefined, sum(stats.counts.map((c) => c.count)))}</td>
          </tr>
        </tfoot>
      </table>
    </div>
  );
}
