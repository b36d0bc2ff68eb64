// OpenTelemetry traces, exported over OTLP/HTTP. This module is imported
// only when config.tracing is on (src/server.ts imports it dynamically):
// off, no part of the SDK is loaded and no interceptor, listener or query
// wrapper is installed, so the hot path does no tracing work at all.
//
// What it emits:
// - a SERVER span per RPC, the child of the caller's `traceparent` when it
//   sent one (the interceptor below, outermost, so that it sees the status
//   the caller sees);
// - a CLIENT span per database statement run inside a traced call;
// - a short span per committed change of an action (`action.enqueued`,
//   `action.approved`, `action.claimed`, `action.completed`...), from the
//   commit seam, in the action's own trace: its parent is the trace
//   context stored with the action, and it links to the span of the call
//   that made the change when that call is in another trace (an
//   approver's, a worker's stream).
//
// The SDK reads its own OTEL_* variables: the endpoint and headers
// (exporter), OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES (resource),
// OTEL_TRACES_SAMPLER (sampler), OTEL_BSP_* (batching).
import type { Interceptor } from "@connectrpc/connect";
import { ConnectError } from "@connectrpc/connect";
import {
  type Context,
  type Link,
  ROOT_CONTEXT,
  type Span,
  SpanKind,
  SpanStatusCode,
  type TextMapGetter,
  type Tracer,
  context,
  trace,
} from "@opentelemetry/api";
import { AsyncLocalStorageContextManager } from "@opentelemetry/context-async-hooks";
import { W3CTraceContextPropagator } from "@opentelemetry/core";
import { OTLPTraceExporter } from "@opentelemetry/exporter-trace-otlp-http";
import { detectResources, envDetector, resourceFromAttributes } from "@opentelemetry/resources";
import { BasicTracerProvider, BatchSpanProcessor } from "@opentelemetry/sdk-trace-base";
import { ATTR_SERVICE_NAME, ATTR_SERVICE_VERSION } from "@opentelemetry/semantic-conventions";
import type pg from "pg";
import type { Logger } from "pino";
import { kServerTraceContext } from "../api/trace-context.js";
import type { Committed } from "../store/commits.js";
import type { TraceContext } from "../store/rows.js";

export interface Tracing {
  /** Goes first in the chain: a span per call. */
  interceptor: Interceptor;
  /** A commit seam listener: a span per committed change of an action. */
  committed(change: Committed): void;
  /** Wraps the pool's statements in spans while a call is traced. */
  traceQueries(pool: pg.Pool): void;
  /** Exports what is left. */
  shutdown(): Promise<void>;
}

const propagator = new W3CTraceContextPropagator();

const headerGetter: TextMapGetter<Headers> = {
  keys: (carrier) => [...carrier.keys()],
  get: (carrier, key) => carrier.get(key) ?? undefined,
};

const storedGetter: TextMapGetter<TraceContext> = {
  keys: () => ["traceparent", "tracestate"],
  get: (carrier, key) => (key === "traceparent" ? carrier.traceparent : key === "tracestate" ? carrier.tracestate || undefined : undefined),
};

/** The trace context that names `span`, as it is stored with an action. */
function traceContextOf(span: Span): TraceContext {
  const carrier: Record<string, string> = {};
  propagator.inject(trace.setSpan(ROOT_CONTEXT, span), carrier, {
    set: (into, key, value) => {
      into[key] = value;
    },
  });
  return { traceparent: carrier.traceparent ?? "", tracestate: carrier.tracestate ?? "" };
}

export function startTracing(log: Logger, version: string): Tracing {
  // One per process: the API keeps a single global context manager, which
  // carries the active span across awaits.
  const contextManager = new AsyncLocalStorageContextManager().enable();
  context.setGlobalContextManager(contextManager);
  const resource = resourceFromAttributes({ [ATTR_SERVICE_NAME]: "actionq", [ATTR_SERVICE_VERSION]: version }).merge(
    detectResources({ detectors: [envDetector] }),
  );
  const exporter = new OTLPTraceExporter();
  const provider = new BasicTracerProvider({ resource, spanProcessors: [new BatchSpanProcessor(exporter)] });
  const tracer = provider.getTracer("actionq", version);
  log.info({ service: resource.attributes[ATTR_SERVICE_NAME] }, "exporting traces over OTLP/HTTP");
  return {
    interceptor: rpcSpans(tracer),
    committed: (change) => lifecycleSpan(tracer, change),
    traceQueries: (pool) => queryClientSpans(tracer, pool),
    async shutdown() {
      await provider.shutdown();
      context.disable();
    },
  };
}

function endWith(span: Span, error?: unknown): void {
  if (error !== undefined) {
    const connectError = ConnectError.from(error);
    span.setAttribute("rpc.grpc.status_code", connectError.code);
    span.setStatus({ code: SpanStatusCode.ERROR, message: connectError.rawMessage });
  } else span.setAttribute("rpc.grpc.status_code", 0);
  span.end();
}

/** A SERVER span per call, the child of the caller's traceparent. A server
 * stream's messages are produced inside the span's context too. */
function rpcSpans(tracer: Tracer): Interceptor {
  return (next) => async (req) => {
    const parent = propagator.extract(ROOT_CONTEXT, req.header, headerGetter);
    const span = tracer.startSpan(
      `${req.service.typeName}/${req.method.name}`,
      { kind: SpanKind.SERVER, attributes: { "rpc.system": "grpc", "rpc.service": req.service.typeName, "rpc.method": req.method.name } },
      parent,
    );
    // Not sampled: the span is not exported, so it must not stand in for
    // the caller's context.
    if (span.isRecording()) req.contextValues.set(kServerTraceContext, traceContextOf(span));
    const active = trace.setSpan(parent, span);
    try {
      const res = await context.with(active, () => next(req));
      if (!res.stream) {
        endWith(span);
        return res;
      }
      const messages = res.message[Symbol.asyncIterator]();
      return {
        ...res,
        message: (async function* () {
          let failure: unknown;
          try {
            for (;;) {
              const step = await context.with(active, () => messages.next());
              if (step.done) break;
              yield step.value;
            }
          } catch (error) {
            failure = error;
            throw error;
          } finally {
            // A stream the client ended is not an error of the server's.
            endWith(span, failure);
          }
        })(),
      };
    } catch (error) {
      endWith(span, error);
      throw error;
    }
  };
}

/** A short span for a committed change, in the action's trace. */
function lifecycleSpan(tracer: Tracer, change: Committed): void {
  if (!("action" in change) || !change.action.trace_context) return;
  const { action } = change;
  const parent = propagator.extract(ROOT_CONTEXT, action.trace_context!, storedGetter);
  const parentTrace = trace.getSpanContext(parent)?.traceId;
  if (!parentTrace) return;
  const cause = trace.getSpan(context.active())?.spanContext();
  const links: Link[] = cause && cause.traceId !== parentTrace ? [{ context: cause }] : [];
  const span = tracer.startSpan(
    `action.${change.kind}`,
    {
      kind: SpanKind.INTERNAL,
      links,
      attributes: {
        "actionq.action.id": action.id,
        "actionq.action.type": action.action_type,
        "actionq.action.status": action.status,
        "actionq.action.from_status": change.from ?? "",
        "actionq.action.attempt": action.attempt,
        "actionq.actor": change.actor,
        ...(action.claimed_by ? { "actionq.worker": action.claimed_by } : {}),
        ...(action.failure_reason ? { "actionq.failure_reason": action.failure_reason } : {}),
      },
    },
    parent,
  );
  span.end();
}

/** The statement's verb: SELECT, INSERT, WITH, BEGIN... */
function operationOf(text: string): string {
  return /^\s*([A-Za-z]+)/.exec(text)?.[1]?.toUpperCase() ?? "QUERY";
}

type QueryFn = (...args: unknown[]) => unknown;

/** Runs `query` inside a CLIENT span when a traced call is active. */
function spanned(tracer: Tracer, query: QueryFn, args: unknown[], parent: Context): unknown {
  const first = args[0];
  const text = typeof first === "string" ? first : (first as { text?: unknown } | null)?.text;
  if (typeof text !== "string") return query(...args);
  const operation = operationOf(text);
  const span = tracer.startSpan(
    operation,
    {
      kind: SpanKind.CLIENT,
      attributes: { "db.system.name": "postgresql", "db.operation.name": operation, "db.query.text": text.trim().slice(0, 2000) },
    },
    parent,
  );
  const finish = (error?: unknown) => {
    if (error) span.setStatus({ code: SpanStatusCode.ERROR, message: (error as Error).message });
    span.end();
  };
  const callbackAt = args.findIndex((arg) => typeof arg === "function");
  if (callbackAt >= 0) {
    const callback = args[callbackAt] as (error: unknown, result: unknown) => void;
    args[callbackAt] = (error: unknown, result: unknown) => {
      finish(error ?? undefined);
      callback(error, result);
    };
    return query(...args);
  }
  const result = query(...args) as Promise<unknown> | undefined;
  if (!result || typeof result.then !== "function") {
    finish();
    return result;
  }
  return result.then(
    (value) => {
      finish();
      return value;
    },
    (error: unknown) => {
      finish(error);
      throw error;
    },
  );
}

/** A span per statement inside a traced call; none for the background
 * components' polling, which no call started. pool.query is wrapped where
 * it is called (pg-pool may run it on a client another call released, in
 * that call's async context); a checked-out client's statements (inside
 * transactions) are wrapped on the client. pg-pool itself calls a client's
 * query with a callback, so the callback form is left to the pool's span. */
function queryClientSpans(tracer: Tracer, pool: pg.Pool): void {
  const poolQuery = pool.query.bind(pool) as QueryFn;
  (pool as unknown as { query: QueryFn }).query = (...args: unknown[]) => {
    const active = context.active();
    return trace.getSpan(active) ? spanned(tracer, poolQuery, args, active) : poolQuery(...args);
  };
  pool.on("connect", (client) => {
    const clientQuery = client.query.bind(client) as QueryFn;
    (client as unknown as { query: QueryFn }).query = (...args: unknown[]) => {
      const active = context.active();
      if (!trace.getSpan(active) || args.some((arg) => typeof arg === "function")) return clientQuery(...args);
      return spanned(tracer, clientQuery, args, active);
    };
  });
}
