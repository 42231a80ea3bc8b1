-- The W3C trace context (traceparent, then a space and the tracestate if any) an event came
-- with, carried onto its deliveries; NULL for the events that came without one (most).
ALTER TABLE events ADD COLUMN trace_context TEXT;
