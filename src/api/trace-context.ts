// The W3C trace context of a call (https://www.w3.org/TR/trace-context/):
// the `traceparent` and `tracestate` metadata, which gRPC, gRPC-Web and
// Connect all carry as HTTP headers. An enqueue keeps it with the action,
// and every claim hands it to the worker. A malformed value is ignored,
// never refused: tracing must not fail a call.
import { type HandlerContext, createContextKey } from "@connectrpc/connect";
import type { TraceContext } from "../store/rows.js";

/** version-traceid-parentid-flags, lowercase hex. Version ff is invalid;
 * a later version may append fields after a dash, 00 may not. */
const TRACEPARENT = /^([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-[^\s]*)?$/;
const ALL_ZERO = /^0+$/;
/** Printable ASCII without commas' neighbours checked: the spec's limit is
 * 32 members; 512 characters is the length it lets a carrier keep. */
const TRACESTATE = /^[\x20-\x7e]{0,512}$/;

/** The trace context in a traceparent / tracestate pair, or null when the
 * traceparent is missing or malformed (the tracestate is dropped alone when
 * only it is malformed). */
export function parseTraceContext(traceparent: string | null | undefined, tracestate: string | null | undefined): TraceContext | null {
  if (!traceparent) return null;
  const value = traceparent.trim();
  const match = TRACEPARENT.exec(value);
  if (!match) return null;
  const [, version, traceId, parentId, , rest] = match;
  if (version === "ff" || (version === "00" && rest !== undefined)) return null;
  if (ALL_ZERO.test(traceId!) || ALL_ZERO.test(parentId!)) return null;
  const state = tracestate?.trim() ?? "";
  return { traceparent: value, tracestate: TRACESTATE.test(state) ? state : "" };
}

/** Set by the tracing interceptor when the server traces: the context of
 * its span for the call, which then stands for the caller's (it is the
 * caller's child). */
export const kServerTraceContext = createContextKey<TraceContext | null>(null, { description: "actionq server span" });

/** The trace context to keep with what this call creates: the server's span
 * when it traces, else the caller's own, else none. */
export function callTraceContext(ctx: HandlerContext): TraceContext | null {
  return ctx.values.get(kServerTraceContext) ?? parseTraceContext(ctx.requestHeader.get("traceparent"), ctx.requestHeader.get("tracestate"));
}
