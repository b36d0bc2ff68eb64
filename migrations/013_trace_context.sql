-- The W3C trace context a producer sent with its enqueue (traceparent and
-- tracestate), kept with the action and handed to the worker with each
-- claim, so that the worker's span continues the producer's trace. One
-- jsonb column, {"traceparent": "...", "tracestate": "..."}, null when the
-- producer sent none.
ALTER TABLE actions ADD COLUMN trace_context jsonb;

-- actions_archive keeps the columns of actions in the same order.
ALTER TABLE actions_archive ADD COLUMN trace_context jsonb;
