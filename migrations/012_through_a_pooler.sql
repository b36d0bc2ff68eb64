-- Working through a transaction pooler (PgBouncer): functions that do not
-- depend on the caller's search path, and webhook senders that hold a
-- lease row instead of a session's advisory lock.
--
-- Nothing may depend on the caller's search path: through a transaction
-- pooler a connection's search path is whatever the pooled server
-- connection has (the startup option that set it is refused), and the
-- server's statements now name the schema themselves.
--
-- Every PL/pgSQL function of the schema runs with the schema as its search
-- path, pinned here while the migration's search path is the schema. Those
-- that read or write tables (concurrency_keys_enqueued,
-- concurrency_keys_count_claimed) need it; the others get it so that a
-- table reference added later cannot depend on the caller. It costs about
-- 2 microseconds a call (a GUC set and reset), paid once per statement by
-- the statement-level triggers. event_lock_key, next_event_id,
-- event_horizon and webhook_outbox_add were pinned when created.
--
-- The three SQL functions (rfc3339, webhook_notifiable,
-- approvals_complete) are left as they are: their bodies use only built-in
-- functions and operators, which PostgreSQL looks up in pg_catalog first
-- whatever the search path, and a SET clause would stop the planner from
-- inlining them. rfc3339 is in the claim and enqueue statements' event
-- payloads; pinned, it took 5 to 8 microseconds a call instead of 1 (500k
-- calls: 2.5-4.0 s against 0.53-0.63 s, PostgreSQL 15). The server calls
-- them qualified with the schema instead.
ALTER FUNCTION refuse_event_change() SET search_path FROM CURRENT;
ALTER FUNCTION notify_events() SET search_path FROM CURRENT;
ALTER FUNCTION refuse_proposal_change() SET search_path FROM CURRENT;
ALTER FUNCTION notify_resumed() SET search_path FROM CURRENT;
ALTER FUNCTION notify_inserted_claimable() SET search_path FROM CURRENT;
ALTER FUNCTION notify_updated() SET search_path FROM CURRENT;
ALTER FUNCTION concurrency_keys_enqueued() SET search_path FROM CURRENT;
ALTER FUNCTION concurrency_keys_count_claimed() SET search_path FROM CURRENT;
ALTER FUNCTION notify_webhook_outbox() SET search_path FROM CURRENT;
ALTER FUNCTION notify_break_glass() SET search_path FROM CURRENT;
ALTER FUNCTION refuse_requirement_change() SET search_path FROM CURRENT;
ALTER FUNCTION notify_schedule_changed() SET search_path FROM CURRENT;

-- Each webhook endpoint's sender holds a lease on its row instead of a
-- session-level advisory lock, which a transaction pooler cannot keep: the
-- holder (one sender of one server process) and when the lease runs out.
-- It is taken and renewed in short statements, every write of the
-- endpoint's delivery state requires it, and a holder that dies loses it
-- when it runs out.
ALTER TABLE webhook_endpoints
  ADD COLUMN lease_holder     text,
  ADD COLUMN lease_expires_at timestamptz,
  ADD CONSTRAINT lease_holder_with_expiry CHECK ((lease_holder IS NULL) = (lease_expires_at IS NULL));
