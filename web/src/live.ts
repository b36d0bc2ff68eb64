// Following the event log. `followEvents` holds one WatchEvents stream and
// keeps it: when the server restarts or the network drops, it reconnects
// with a bounded backoff from the last cursor it received, so nothing is
// missed and nothing is delivered twice. The console keeps one such stream
// for itself (`liveEvents`) to refresh what is on screen; the Events page
// opens its own with the person's filters.
import { type QueryClient, useQuery } from "@tanstack/react-query";
import { useEffect, useState } from "react";
import type { Event } from "../../gen/actionq/v1/action_pb.js";
import { Code, api, errorCode, errorText } from "./api.js";

export type LiveStatus = { state: "connecting" } | { state: "live"; cursor: bigint } | { state: "reconnecting"; error: string; retryInMs: number };

export interface FollowOptions {
  /** Resume after this event id; undefined starts from now. */
  afterId?: bigint;
  actionId?: bigint;
  eventTypes?: string[];
  onEvent(event: Event): void;
  onStatus?(status: LiveStatus): void;
  signal: AbortSignal;
}

const MIN_BACKOFF_MS = 250;
const MAX_BACKOFF_MS = 5_000;

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const timer = setTimeout(done, ms);
    signal.addEventListener("abort", done, { once: true });
    function done() {
      clearTimeout(timer);
      signal.removeEventListener("abort", done);
      resolve();
    }
  });
}

/** Follows the log until `signal` aborts; returns the last cursor. */
export async function followEvents(options: FollowOptions): Promise<bigint | undefined> {
  const { signal } = options;
  let cursor = options.afterId;
  let backoff = MIN_BACKOFF_MS;
  options.onStatus?.({ state: "connecting" });
  while (!signal.aborted) {
    try {
      const request = {
        ...(cursor === undefined ? { fromNow: true } : { afterId: cursor }),
        actionId: options.actionId ?? 0n,
        eventTypes: options.eventTypes ?? [],
      };
      for await (const message of api.watchEvents(request, { signal })) {
        if (message.kind.case === "event") {
          const event = message.kind.value;
          // The cursor moves first: a listener that throws must not make
          // the event come again.
          cursor = message.cursor;
          options.onEvent(event);
        } else {
          cursor = message.cursor;
        }
        backoff = MIN_BACKOFF_MS;
        options.onStatus?.({ state: "live", cursor: cursor ?? 0n });
      }
      // The server ended the stream (shutting down): reconnect.
      throw new Error("the server ended the event stream");
    } catch (error) {
      if (signal.aborted) break;
      const code = errorCode(error);
      if (code === Code.Unauthenticated || code === Code.PermissionDenied || code === Code.InvalidArgument) {
        options.onStatus?.({ state: "reconnecting", error: errorText(error), retryInMs: MAX_BACKOFF_MS });
        await sleep(MAX_BACKOFF_MS, signal);
        continue;
      }
      options.onStatus?.({ state: "reconnecting", error: errorText(error), retryInMs: backoff });
      await sleep(backoff, signal);
      backoff = Math.min(backoff * 2, MAX_BACKOFF_MS);
    }
  }
  return cursor;
}

type Listener = (event: Event) => void;

/** The console's own stream: every event from the moment the console
 * opened, fanned out to the pages that listen. */
class LiveEvents {
  private readonly listeners = new Set<Listener>();
  private readonly statusListeners = new Set<(status: LiveStatus) => void>();
  private controller: AbortController | undefined;
  status: LiveStatus = { state: "connecting" };

  start(): void {
    if (this.controller) return;
    this.controller = new AbortController();
    void followEvents({
      signal: this.controller.signal,
      onEvent: (event) => {
        for (const listener of this.listeners) listener(event);
      },
      onStatus: (status) => {
        this.status = status;
        for (const listener of this.statusListeners) listener(status);
      },
    });
  }

  stop(): void {
    this.controller?.abort();
    this.controller = undefined;
  }

  subscribe(listener: Listener): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  subscribeStatus(listener: (status: LiveStatus) => void): () => void {
    this.statusListeners.add(listener);
    return () => this.statusListeners.delete(listener);
  }
}

export const liveEvents = new LiveEvents();

/** Calls `listener` for every live event while the component is mounted. */
export function useLiveEvents(listener: Listener): void {
  useEffect(() => liveEvents.subscribe(listener), [listener]);
}

export function useLiveStatus(): LiveStatus {
  const [status, setStatus] = useState(liveEvents.status);
  useEffect(() => liveEvents.subscribeStatus(setStatus), []);
  return status;
}

/** Query keys the console uses, so that events refresh the right ones. */
export const keys = {
  caller: ["caller"] as const,
  stats: ["stats"] as const,
  /** GetQueueStats for the pause banner only: refreshed by pause events,
   * not by every action event, since every open page shows the banner. */
  pauses: ["pauses"] as const,
  policy: ["policy"] as const,
  inbox: ["inbox"] as const,
  actions: ["actions"] as const,
  action: (id: bigint) => ["action", id.toString()] as const,
  /** Every schedules answer: the list's pages and each schedule. Ticks
   * and the statuses of the actions they made change with action events. */
  schedules: ["schedules"] as const,
  schedule: (id: string) => ["schedules", "one", id] as const,
};

/** The pauses in force. The banner and the overview's table both read this
 * one cached answer, so while a pause or a resume is being refetched they
 * can never disagree (one saying "paused", the other "nothing is paused"). */
export function usePauses() {
  return useQuery({ queryKey: keys.pauses, queryFn: () => api.getQueueStats({}), select: (stats) => stats.pauses, refetchInterval: 60_000 });
}

/** After a pause or a resume made here: the pauses and the numbers. */
export function refreshPauses(queryClient: QueryClient): Promise<void> {
  return Promise.all([queryClient.invalidateQueries({ queryKey: keys.pauses }), queryClient.invalidateQueries({ queryKey: keys.stats })]).then(() => undefined);
}

/** Keeps cached answers current: each event marks stale what it changes.
 * Lists are refreshed at most every LIST_REFRESH_MS, so a burst of events
 * costs one refetch, not one per event. */
const LIST_REFRESH_MS = 1_000;

export function refreshOnEvents(queryClient: QueryClient): () => void {
  let listTimer: ReturnType<typeof setTimeout> | undefined;
  const refreshLists = () => {
    if (listTimer !== undefined) return;
    listTimer = setTimeout(() => {
      listTimer = undefined;
      void queryClient.invalidateQueries({ queryKey: keys.actions });
      void queryClient.invalidateQueries({ queryKey: keys.inbox });
      void queryClient.invalidateQueries({ queryKey: keys.stats });
      void queryClient.invalidateQueries({ queryKey: keys.schedules });
    }, LIST_REFRESH_MS);
  };
  const unsubscribe = liveEvents.subscribe((event) => {
    if (event.actionId !== 0n) {
      void queryClient.invalidateQueries({ queryKey: keys.action(event.actionId) });
      refreshLists();
      return;
    }
    // Pauses must show everywhere at once, not after the list delay.
    if (event.eventType === "coordinator_paused" || event.eventType === "coordinator_resumed") {
      void refreshPauses(queryClient);
    }
    if (event.eventType === "policy_reloaded") void queryClient.invalidateQueries({ queryKey: keys.policy });
    // A schedule's own events (paused, resumed, a tick skipped) carry no action.
    if (event.eventType.startsWith("schedule_")) void queryClient.invalidateQueries({ queryKey: keys.schedules });
  });
  return () => {
    clearTimeout(listTimer);
    unsubscribe();
  };
}
