// OpenTelemetry for the example worker, loaded before it:
//
//   OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:4318 \
//     node --import ./dist/examples/tracing.js dist/examples/worker.js
//
// The worker itself uses only @opentelemetry/api, which does nothing until
// a process sets up an SDK as here (or with @opentelemetry/sdk-node, or
// any other setup of its own): a real worker keeps its own. This one
// exports over OTLP/HTTP (JSON) to the standard OTEL_EXPORTER_OTLP_*
// endpoint, and does nothing when neither endpoint variable is set.
import { context, propagation, trace } from "@opentelemetry/api";
import { AsyncLocalStorageContextManager } from "@opentelemetry/context-async-hooks";
import { W3CTraceContextPropagator } from "@opentelemetry/core";
import { OTLPTraceExporter } from "@opentelemetry/exporter-trace-otlp-http";
import { detectResources, envDetector, resourceFromAttributes } from "@opentelemetry/resources";
import { BasicTracerProvider, BatchSpanProcessor } from "@opentelemetry/sdk-trace-base";

if (process.env.OTEL_EXPORTER_OTLP_ENDPOINT || process.env.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT) {
  const provider = new BasicTracerProvider({
    resource: resourceFromAttributes({ "service.name": "actionq-example-worker" }).merge(detectResources({ detectors: [envDetector] })),
    spanProcessors: [new BatchSpanProcessor(new OTLPTraceExporter())],
  });
  context.setGlobalContextManager(new AsyncLocalStorageContextManager().enable());
  propagation.setGlobalPropagator(new W3CTraceContextPropagator());
  trace.setGlobalTracerProvider(provider);
  // The worker ends by leaving its loop: export what is left first.
  let flushed = false;
  process.on("beforeExit", () => {
    if (flushed) return;
    flushed = true;
    void provider.shutdown();
  });
}
