-- Outgoing webhooks. Notifiable events are copied into an outbox by a
-- trigger on the event log, in the transaction that writes the event: a
-- notification exists exactly when its event committed, and a crash
-- between the commit and the delivery loses nothing. Servers deliver the
-- outbox to each endpoint in event-id order, never past event_horizon(),
-- so a lower id that commits late is never skipped.

-- Which events may notify: a superset of what src/notify/kinds.ts turns
-- into notification kinds, filtered here so that the hot paths (auto-approved
-- enqueues, claims, completions) never write to the outbox. An event type
-- added later is one more line here (CREATE OR REPLACE in a new migration)
-- and one more row in kinds.ts. Plain SQL with no table access, so that the
-- trigger's WHEN clause inlines it.
CREATE FUNCTION webhook_notifiable(event_type text, actor text, payload jsonb) RETURNS boolean
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
  SELECT CASE event_type
    WHEN 'action_enqueued' THEN payload->>'status' = 'pending'
    -- Auto-approvals (by policy:<mode>) are the common case and notify nobody.
    WHEN 'action_approved' THEN actor NOT LIKE 'policy:%'
    ELSE event_type IN ('approval_granted', 'action_rejected', 'action_retry_scheduled', 'action_failed',
                        'coordinator_paused', 'coordinator_resumed', 'policy_reloaded', 'break_glass')
  END
$$;

CREATE TABLE webhook_outbox (
  event_id   bigint PRIMARY KEY,
  -- The action as the event's statement left it (to_jsonb of its row), so a
  -- late delivery still shows the action as it was; NULL for events of no
  -- action. jsonb_populate_record(NULL::actions, action) reads it back.
  action     jsonb,
  created_at timestamptz NOT NULL DEFAULT now()
);

CREATE FUNCTION webhook_outbox_add() RETURNS trigger
LANGUAGE plpgsql SET search_path FROM CURRENT
AS $$
BEGIN
  INSERT INTO webhook_outbox (event_id, action)
  VALUES (NEW.id, (SELECT to_jsonb(a) FROM actions a WHERE a.id = NEW.action_id));
  RETURN NULL;
END
$$;
CREATE TRIGGER events_to_webhook_outbox AFTER INSERT ON events
  FOR EACH ROW WHEN (webhook_notifiable(NEW.event_type, NEW.actor, NEW.payload))
  EXECUTE FUNCTION webhook_outbox_add();

-- Wakeup 'n': notifications were committed; the server delivering an
-- endpoint looks at the outbox. One per statement, not one per row.
CREATE FUNCTION notify_webhook_outbox() RETURNS trigger
LANGUAGE plpgsql
AS $$
BEGIN
  PERFORM pg_notify('actionq_' || TG_TABLE_SCHEMA, 'n');
  RETURN NULL;
END
$$;
CREATE TRIGGER webhook_outbox_notify AFTER INSERT ON webhook_outbox
  FOR EACH STATEMENT EXECUTE FUNCTION notify_webhook_outbox();

-- Each endpoint's delivery state, shared by every replica. The replica that
-- holds the endpoint's advisory lock is its only sender; the state says
-- how far it got.
CREATE TABLE webhook_endpoints (
  name              text PRIMARY KEY,
  -- Every notification with an event id up to here has been delivered to
  -- this endpoint, or was not for it. A new endpoint starts at the horizon
  -- of its first sight: history is not replayed.
  cursor            bigint NOT NULL,
  -- Failed attempts at the notification after the cursor, and when the
  -- next one may start.
  attempts          integer NOT NULL DEFAULT 0 CHECK (attempts >= 0),
  next_attempt_at   timestamptz NOT NULL DEFAULT now(),
  failing_since     timestamptz,
  last_error        text,
  last_delivered_at timestamptz,
  -- The last time a running server had this endpoint in its file. The
  -- retention of the outbox waits for endpoints seen lately only.
  seen_at           timestamptz NOT NULL DEFAULT now(),
  created_at        timestamptz NOT NULL DEFAULT now()
);
