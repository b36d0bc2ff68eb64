// The Events page's tail: one followEvents stream with the person's
// filters, its events batched into the display (one render per burst, not
// per event), held in a buffer while the display is paused, and capped so
// that a busy log cannot slow the page down. The stream itself never
// pauses: pausing the display loses nothing.
import { useEffect, useReducer, useRef, useState } from "react";
import type { Event } from "../../../gen/actionq/v1/action_pb.js";
import { type LiveStatus, followEvents } from "../live.js";

/** Rows kept on screen; older ones are dropped, newest first. */
export const KEPT_ROWS = 1_000;
const FLUSH_MS = 50;

export interface TailOptions {
  /** Undefined: from now. */
  afterId: bigint | undefined;
  actionId: bigint;
  eventTypes: string[];
  /** A new value restarts the stream even when the options are equal. */
  run: number;
}

export interface Tail {
  /** Newest first, at most KEPT_ROWS. */
  rows: Event[];
  status: LiveStatus;
  /** The last cursor received: where a restart resumes. */
  cursor: bigint | undefined;
  received: number;
  /** Events that arrived while paused, not yet shown. */
  held: number;
  /** Events dropped from view by the cap. */
  dropped: number;
  paused: boolean;
  setPaused(paused: boolean): void;
  clear(): void;
}

/** Newest first, capped: `incoming` is oldest first. */
function prepend(rows: Event[], incoming: Event[]): { rows: Event[]; dropped: number } {
  const merged = incoming.slice().reverse().concat(rows);
  const dropped = Math.max(0, merged.length - KEPT_ROWS);
  return { rows: dropped > 0 ? merged.slice(0, KEPT_ROWS) : merged, dropped };
}

/** Puts `batch` (oldest first) on screen, counting what the cap drops. */
function show(t: { rows: Event[]; dropped: number }, batch: Event[]): void {
  const next = prepend(t.rows, batch);
  t.rows = next.rows;
  t.dropped += next.dropped;
}

export function useEventTail(options: TailOptions): Tail {
  // The tail lives in one mutable record, changed only by the stream's
  // callbacks and the buttons; `render` asks React to show it again.
  const tail = useRef({ rows: [] as Event[], held: [] as Event[], dropped: 0, received: 0, cursor: undefined as bigint | undefined, paused: false });
  const [status, setStatus] = useState<LiveStatus>({ state: "connecting" });
  // Stable across renders (a dispatch), so the stream's effect need not restart for it.
  const [, render] = useReducer((version: number) => version + 1, 0);

  const { afterId, actionId, eventTypes, run } = options;
  const typesKey = eventTypes.join(",");
  // biome-ignore lint/correctness/useExhaustiveDependencies(run): each submit of the form bumps run to restart the stream, even with equal filters; the effect never reads it
  useEffect(() => {
    const controller = new AbortController();
    let pending: Event[] = [];
    let timer: ReturnType<typeof setTimeout> | undefined;
    tail.current = { rows: [], held: [], dropped: 0, received: 0, cursor: afterId, paused: tail.current.paused };
    render();
    const flush = () => {
      timer = undefined;
      const batch = pending;
      pending = [];
      if (batch.length === 0 || controller.signal.aborted) return;
      const t = tail.current;
      t.received += batch.length;
      t.cursor = batch[batch.length - 1]!.id;
      if (t.paused) {
        // Held oldest first, capped like the display: what would scroll
        // off anyway is counted, not kept.
        const all = t.held.concat(batch);
        const over = Math.max(0, all.length - KEPT_ROWS);
        t.dropped += over;
        t.held = over > 0 ? all.slice(over) : all;
      } else {
        show(t, batch);
      }
      render();
    };
    void followEvents({
      ...(afterId === undefined ? {} : { afterId }),
      actionId,
      eventTypes: typesKey === "" ? [] : typesKey.split(","),
      signal: controller.signal,
      onEvent(event) {
        pending.push(event);
        timer ??= setTimeout(flush, FLUSH_MS);
      },
      onStatus(next) {
        if (controller.signal.aborted) return;
        // A heartbeat's cursor may run ahead of the last event shown.
        const t = tail.current;
        if (next.state === "live" && (t.cursor === undefined || next.cursor > t.cursor) && pending.length === 0) t.cursor = next.cursor;
        setStatus(next);
      },
    });
    return () => {
      controller.abort();
      clearTimeout(timer);
    };
  }, [afterId, actionId, typesKey, run]);

  const t = tail.current;
  return {
    rows: t.rows,
    status,
    cursor: t.cursor,
    received: t.received,
    held: t.held.length,
    dropped: t.dropped,
    paused: t.paused,
    setPaused(paused: boolean) {
      const current = tail.current;
      current.paused = paused;
      if (!paused && current.held.length > 0) {
        show(current, current.held);
        current.held = [];
      }
      render();
    },
    clear() {
      tail.current.rows = [];
      render();
    },
  };
}
