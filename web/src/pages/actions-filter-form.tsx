// The filter form of the Actions list. Statuses apply as soon as they are
// ticked; the text fields apply on Enter or "Apply", so the list does not
// reload on every keystroke.
import { useQuery } from "@tanstack/react-query";
import { type FormEvent, useEffect, useState } from "react";
import type { ActionStatus } from "../../../gen/actionq/v1/action_pb.js";
import { api } from "../api.js";
import { STATUSES, STATUS_NAMES } from "../format.js";
import { keys } from "../live.js";
import { type ActionFilters, isFiltered, splitList } from "./actions-filters.js";

interface TextFields {
  types: string;
  projects: string;
  producer: string;
  correlationId: string;
}

function textOf(filters: ActionFilters): TextFields {
  return { types: filters.actionTypes.join(", "), projects: filters.projects.join(", "), producer: filters.producer, correlationId: filters.correlationId };
}

export function FilterForm({ filters, onApply }: { filters: ActionFilters; onApply(next: ActionFilters): void }) {
  const [text, setText] = useState(() => textOf(filters));
  // The back button changes the filters under the form: follow them.
  const applied = textOf(filters);
  const appliedKey = JSON.stringify(applied);
  useEffect(() => setText(JSON.parse(appliedKey) as TextFields), [appliedKey]);

  // The known action types, offered as suggestions.
  const stats = useQuery({ queryKey: keys.stats, queryFn: () => api.getQueueStats({}) });
  const knownTypes = [...new Set((stats.data?.counts ?? []).map((c) => c.actionType))].sort();

  const withText = (fields: TextFields): ActionFilters => ({
    ...filters,
    actionTypes: splitList(fields.types),
    projects: splitList(fields.projects),
    producer: fields.producer.trim(),
    correlationId: fields.correlationId.trim(),
  });
  const submit = (event: FormEvent) => {
    event.preventDefault();
    onApply(withText(text));
  };
  const toggle = (status: ActionStatus, on: boolean) => {
    const statuses = on ? [...filters.statuses, status] : filters.statuses.filter((s) => s !== status);
    // Typed but not yet applied text goes along, as the person would expect.
    onApply({ ...withText(text), statuses });
  };
  const field = (key: keyof TextFields) => ({
    value: text[key],
    onChange: (e: { target: { value: string } }) => setText({ ...text, [key]: e.target.value }),
  });
  const dirty = JSON.stringify(text) !== appliedKey;

  return (
    <form className="ops-filters" onSubmit={submit} aria-label="Filters">
      <fieldset className="ops-statuses">
        <legend>Status</legend>
        {STATUSES.map((status) => (
          <label key={status} className="ops-check">
            <input type="checkbox" checked={filters.statuses.includes(status)} onChange={(e) => toggle(status, e.target.checked)} /> {STATUS_NAMES[status]}
          </label>
        ))}
      </fieldset>
      <div className="ops-fields">
        <div>
          <label htmlFor="filter-type">Action type</label>
          <input id="filter-type" list="filter-known-types" spellCheck={false} autoComplete="off" placeholder="any; a, b for several" {...field("types")} />
          <datalist id="filter-known-types">
            {knownTypes.map((type) => (
              <option key={type} value={type} />
            ))}
          </datalist>
        </div>
        <div>
          <label htmlFor="filter-project">Project</label>
          <input id="filter-project" spellCheck={false} autoComplete="off" placeholder="any" {...field("projects")} />
        </div>
        <div>
          <label htmlFor="filter-producer">Producer</label>
          <input id="filter-producer" spellCheck={false} autoComplete="off" placeholder="e.g. agent:triage" {...field("producer")} />
        </div>
        <div>
          <label htmlFor="filter-correlation">Correlation id</label>
          <input id="filter-correlation" spellCheck={false} autoComplete="off" placeholder="any" {...field("correlationId")} />
        </div>
        <div className="ops-filter-buttons">
          <button type="submit" className={dirty ? "primary" : undefined}>
            Apply filters
          </button>
          <button
            type="button"
            disabled={!isFiltered(filters) && !dirty}
            onClick={() => onApply({ statuses: [], actionTypes: [], projects: [], producer: "", correlationId: "", pageSize: filters.pageSize })}
          >
            Clear
          </button>
        </div>
      </div>
    </form>
  );
}
