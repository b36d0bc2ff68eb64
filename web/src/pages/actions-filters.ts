// The Actions list's filters, kept in the URL's query string so that a
// filtered view can be shared and the browser's back button undoes a
// filter. One place reads and writes them, so the form, the request and
// the URL always agree.
import type { ActionStatus } from "../../../gen/actionq/v1/action_pb.js";
import { STATUSES, STATUS_NAMES } from "../format.js";

export const PAGE_SIZES = [50, 100, 200] as const;
export const DEFAULT_PAGE_SIZE = 50;

export interface ActionFilters {
  statuses: ActionStatus[];
  /** Several may be given, separated by commas. */
  actionTypes: string[];
  projects: string[];
  producer: string;
  correlationId: string;
  pageSize: number;
}

const STATUS_BY_NAME = new Map<string, ActionStatus>(STATUSES.map((status) => [STATUS_NAMES[status], status]));

/** "a, b,,c" -> ["a", "b", "c"] */
export function splitList(text: string): string[] {
  return text
    .split(",")
    .map((part) => part.trim())
    .filter((part) => part !== "");
}

export function filtersFromSearch(params: URLSearchParams): ActionFilters {
  const size = Number(params.get("size"));
  return {
    statuses: params
      .getAll("status")
      .map((name) => STATUS_BY_NAME.get(name))
      .filter((status): status is ActionStatus => status !== undefined),
    actionTypes: params.getAll("type").flatMap(splitList),
    projects: params.getAll("project").flatMap(splitList),
    producer: params.get("producer")?.trim() ?? "",
    correlationId: params.get("correlation")?.trim() ?? "",
    pageSize: (PAGE_SIZES as readonly number[]).includes(size) ? size : DEFAULT_PAGE_SIZE,
  };
}

export function searchFromFilters(filters: ActionFilters): URLSearchParams {
  const params = new URLSearchParams();
  // Lifecycle order, whatever order they were ticked in, so equal views
  // have equal URLs.
  for (const status of STATUSES) if (filters.statuses.includes(status)) params.append("status", STATUS_NAMES[status]);
  if (filters.actionTypes.length > 0) params.set("type", filters.actionTypes.join(","));
  if (filters.projects.length > 0) params.set("project", filters.projects.join(","));
  if (filters.producer) params.set("producer", filters.producer);
  if (filters.correlationId) params.set("correlation", filters.correlationId);
  if (filters.pageSize !== DEFAULT_PAGE_SIZE) params.set("size", String(filters.pageSize));
  return params;
}

/** Whether any filter narrows the list (page size is not a filter). */
export function isFiltered(filters: ActionFilters): boolean {
  return filters.statuses.length + filters.actionTypes.length + filters.projects.length > 0 || filters.producer !== "" || filters.correlationId !== "";
}

/** The ListActions request for a page of this view. */
export function listRequest(filters: ActionFilters, pageToken: string) {
  return {
    statuses: filters.statuses,
    actionTypes: filters.actionTypes,
    projects: filters.projects,
    createdBy: filters.producer,
    correlationId: filters.correlationId,
    pageSize: filters.pageSize,
    pageToken,
  };
}
