// Actions: every action in the queue, newest first, narrowed by filters
// that live in the URL, one page at a time. Only a page is ever rendered,
// so a queue of thousands stays quick; the page refreshes itself as
// events arrive (refreshOnEvents invalidates keys.actions).
import { keepPreviousData, useQuery } from "@tanstack/react-query";
import { memo, useEffect, useMemo, useRef, useState } from "react";
import { useSearchParams } from "wouter";
import type { Action } from "../../../gen/actionq/v1/action_pb.js";
import { api } from "../api.js";
import { ActionLink, ErrorNotice, RiskBadge, StatusBadge, When } from "../components/badges.js";
import { clip, relative } from "../format.js";
import { keys } from "../live.js";
import { FilterForm } from "./actions-filter-form.js";
import { type ActionFilters, PAGE_SIZES, filtersFromSearch, isFiltered, listRequest, searchFromFilters } from "./actions-filters.js";
import "../components/ops-shared.css";
import "./actions.css";

export function ActionsPage() {
  const [params, setParams] = useSearchParams();
  const search = params.toString();
  const filters = useMemo(() => filtersFromSearch(new URLSearchParams(search)), [search]);
  // The view in a canonical spelling: equal filters, equal view.
  const view = searchFromFilters(filters).toString();
  // Tokens of the pages before this one, for Previous; the view's own URL
  // starts at the first page, so a new filter starts the stack again.
  const [pages, setPages] = useState<{ view: string; tokens: string[] }>({ view, tokens: [""] });
  const tokens = pages.view === view ? pages.tokens : [""];
  const token = tokens[tokens.length - 1] ?? "";

  const page = useQuery({
    // Under keys.actions, so events refresh the page on screen.
    queryKey: [...keys.actions, "list", view, token] as const,
    queryFn: () => api.listActions(listRequest(filters, token)),
    placeholderData: keepPreviousData,
  });

  const apply = (next: ActionFilters) => setParams(searchFromFilters(next));
  const nextToken = page.data?.nextPageToken ?? "";
  const pageNumber = tokens.length;
  const actions = page.data?.actions ?? [];
  const first = (pageNumber - 1) * filters.pageSize + 1;

  // Moving between pages puts the focus back on the table's heading, so a
  // keyboard user lands on the new rows, not on a button that moved. The
  // focus moves once per move, when the new page (not the old one kept as
  // a placeholder) is on screen.
  const headingRef = useRef<HTMLHeadingElement>(null);
  const [focusPending, setFocusPending] = useState(false);
  useEffect(() => {
    if (!focusPending || page.isPlaceholderData) return;
    headingRef.current?.focus();
    setFocusPending(false);
  }, [focusPending, page.isPlaceholderData]);

  const go = (nextTokens: string[]) => {
    setPages({ view, tokens: nextTokens });
    setFocusPending(true);
  };
  // The pager above the table and the one below it act alike.
  const paging = {
    hasPrevious: pageNumber > 1,
    hasNext: nextToken !== "",
    busy: page.isPlaceholderData,
    onPrevious: () => go(tokens.slice(0, -1)),
    onNext: () => go([...tokens, nextToken]),
  };

  return (
    <div className="ops-actions">
      <h1>Actions</h1>
      <FilterForm filters={filters} onApply={apply} />
      <ErrorNotice error={page.error} prefix="The list could not be loaded" />
      <div className="ops-list-head">
        <h2 ref={headingRef} tabIndex={-1} id="actions-results">
          {page.isPending
            ? "Loading actions…"
            : actions.length === 0
              ? isFiltered(filters)
                ? "No action matches these filters"
                : "No actions yet"
              : `Actions ${first}–${first + actions.length - 1}`}
        </h2>
        {/* Announces page changes only: live refreshes every second would
            make a screen reader repeat itself. */}
        <span className="muted" role="status">
          Page {pageNumber}, newest first
        </span>
        <span className="muted ops-small" aria-hidden="true">
          {page.isFetching && !page.isPending ? "updating…" : ""}
        </span>
        <Pager {...paging} pageSize={filters.pageSize} onPageSize={(pageSize) => apply({ ...filters, pageSize })} />
      </div>
      {actions.length > 0 && <ActionsTable actions={actions} stale={page.isPlaceholderData} />}
      {actions.length > 0 && (
        <div className="ops-list-foot">
          <Pager {...paging} label="Pages (bottom)" />
        </div>
      )}
    </div>
  );
}

function Pager(props: {
  hasPrevious: boolean;
  hasNext: boolean;
  busy: boolean;
  onPrevious(): void;
  onNext(): void;
  pageSize?: number;
  onPageSize?(size: number): void;
  label?: string;
}) {
  return (
    <nav className="ops-pager" aria-label={props.label ?? "Pages"}>
      <button type="button" onClick={props.onPrevious} disabled={!props.hasPrevious || props.busy}>
        ← Previous
      </button>
      <button type="button" onClick={props.onNext} disabled={!props.hasNext || props.busy}>
        Next →
      </button>
      {props.pageSize !== undefined && props.onPageSize && (
        <label className="ops-inline">
          Per page{" "}
          <select value={props.pageSize} onChange={(e) => props.onPageSize?.(Number(e.target.value))}>
            {PAGE_SIZES.map((size) => (
              <option key={size} value={size}>
                {size}
              </option>
            ))}
          </select>
        </label>
      )}
    </nav>
  );
}

function ActionsTable({ actions, stale }: { actions: Action[]; stale: boolean }) {
  const now = Date.now();
  return (
    <div className="ops-table-wrap">
      <table className={`ops-table${stale ? " ops-stale" : ""}`} aria-describedby="actions-results" aria-busy={stale}>
        <caption className="visually-hidden">Actions, newest first</caption>
        <thead>
          <tr>
            <th scope="col">Id</th>
            <th scope="col">Type</th>
            <th scope="col">Status</th>
            <th scope="col">Risk</th>
            <th scope="col">Project</th>
            <th scope="col">Target</th>
            <th scope="col">Node / service</th>
            <th scope="col">Producer</th>
            <th scope="col" className="num">
              Priority
            </th>
            <th scope="col" className="num">
              Attempt
            </th>
            <th scope="col">Age</th>
            <th scope="col">Updated</th>
          </tr>
        </thead>
        <tbody>
          {actions.map((action) => (
            <ActionRow key={action.id.toString()} action={action} now={now} />
          ))}
        </tbody>
      </table>
    </div>
  );
}

/** Text clipped to a cell, the whole of it on hover. */
function Clipped({ text, max, className }: { text: string; max: number; className?: string }) {
  if (!text) return <span className="muted">—</span>;
  return (
    <span className={className} title={text.length > max ? text : undefined}>
      {clip(text, max)}
    </span>
  );
}

const ActionRow = memo(function ActionRow({ action, now }: { action: Action; now: number }) {
  const where = [action.node, action.service].filter(Boolean).join(" / ");
  return (
    <tr>
      <td className="mono">
        <ActionLink id={action.id} />
      </td>
      <td>
        <Clipped text={action.actionType} max={28} className="mono" />
      </td>
      <td>
        <StatusBadge status={action.status} />
      </td>
      <td>
        <RiskBadge risk={action.riskLevel} />
      </td>
      <td>
        <Clipped text={action.project} max={20} />
      </td>
      <td>
        <Clipped text={action.targetRef} max={36} className="mono" />
      </td>
      <td>
        <Clipped text={where} max={28} />
      </td>
      <td>
        <Clipped text={action.createdBy} max={22} />
      </td>
      <td className="num">{action.priority}</td>
      <td className="num" title={`${action.failures} failed, ${action.lostDeliveries} lost, at most ${action.maxAttempts} failures`}>
        {action.attempt}
      </td>
      <td className="ops-nowrap">{relative(action.createTime, now).replace(/ ago$/, "")}</td>
      <td className="ops-nowrap">
        <When at={action.updateTime} />
      </td>
    </tr>
  );
});
