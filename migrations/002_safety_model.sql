-- The safety model: what the policy decided about each action, approvals
-- counted towards a quorum and expiring, proposals that cannot change after
-- enqueue, supersede and rollback lineage, and the operators' pauses.

ALTER TABLE actions
  ADD COLUMN autonomous_eligible boolean NOT NULL DEFAULT false,
  ADD COLUMN approvals_required  integer NOT NULL DEFAULT 0 CHECK (approvals_required BETWEEN 0 AND 20),
  -- The distinct approvers so far, in order. The events hold their notes.
  ADD COLUMN approvers           text[] NOT NULL DEFAULT '{}',
  ADD COLUMN approval_expires_at timestamptz,
  ADD COLUMN policy_version      text NOT NULL DEFAULT '',
  ADD COLUMN supersedes_id       bigint,
  ADD COLUMN rollback_payload    jsonb CHECK (rollback_payload IS NULL OR jsonb_typeof(rollback_payload) = 'object'),
  ADD COLUMN rollback_of         bigint;

-- Actions already waiting when quorums arrived need the one approval they
-- needed before.
UPDATE actions SET approvals_required = 1 WHERE status = 'pending';

ALTER TABLE actions
  ADD CONSTRAINT pending_until_quorum CHECK (status <> 'pending' OR cardinality(approvers) < approvals_required),
  ADD CONSTRAINT rollback_needs_ref CHECK (rollback_payload IS NULL OR rollback_ref <> '');

-- The sweeper's third question: whose approval window has closed.
CREATE INDEX actions_approval_expiry ON actions (approval_expires_at) WHERE status = 'pending';
-- At most one rollback of an action is live at a time; one that was
-- rejected, cancelled or failed makes room for another.
CREATE UNIQUE INDEX actions_one_live_rollback ON actions (rollback_of)
  WHERE rollback_of IS NOT NULL AND status IN ('pending', 'approved', 'claimed', 'completed');

-- An approval binds to exactly what was reviewed: once enqueued, what an
-- action is and who proposed it never change. A changed proposal is a new
-- action that supersedes the old one. The trigger fires only for
-- statements that set these columns, so the lifecycle's updates never pay
-- for it.
CREATE FUNCTION refuse_proposal_change() RETURNS trigger
LANGUAGE plpgsql
AS $$
BEGIN
  IF (NEW.action_type, NEW.project, NEW.target_ref, NEW.source_refs, NEW.payload, NEW.risk_level, NEW.confidence,
      NEW.created_by, NEW.correlation_id, NEW.node, NEW.service, NEW.parent_id, NEW.chain_depth, NEW.rollback_ref,
      NEW.rollback_payload, NEW.rollback_of, NEW.supersedes_id, NEW.approvals_required, NEW.policy_version,
      NEW.autonomous_eligible, NEW.created_at)
     IS DISTINCT FROM
     (OLD.action_type, OLD.project, OLD.target_ref, OLD.source_refs, OLD.payload, OLD.risk_level, OLD.confidence,
      OLD.created_by, OLD.correlation_id, OLD.node, OLD.service, OLD.parent_id, OLD.chain_depth, OLD.rollback_ref,
      OLD.rollback_payload, OLD.rollback_of, OLD.supersedes_id, OLD.approvals_required, OLD.policy_version,
      OLD.autonomous_eligible, OLD.created_at) THEN
    RAISE EXCEPTION 'action % cannot change after enqueue: approvals bind to what was proposed; enqueue a superseding action instead', OLD.id
      USING ERRCODE = 'insufficient_privilege';
  END IF;
  RETURN NEW;
END
$$;
CREATE TRIGGER actions_proposal_frozen
  BEFORE UPDATE OF action_type, project, target_ref, source_refs, payload, risk_level, confidence, created_by,
    correlation_id, node, service, parent_id, chain_depth, rollback_ref, rollback_payload, rollback_of, supersedes_id,
    approvals_required, policy_version, autonomous_eligible, created_at
  ON actions FOR EACH ROW EXECUTE FUNCTION refuse_proposal_change();

-- The kill switch. A row here holds back claims (everything, one action
-- type, one project) or the policy's own approvals. The claim statement
-- reads this table, so a pause holds on every server the moment it commits.
CREATE TABLE pauses (
  kind       text NOT NULL CHECK (kind IN ('all', 'action_type', 'project', 'auto_approval')),
  value      text NOT NULL DEFAULT '',
  paused_by  text NOT NULL,
  reason     text NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (kind, value),
  CONSTRAINT value_only_for_named_scopes CHECK ((kind IN ('all', 'auto_approval')) = (value = ''))
);

-- Wakeup 'r': a pause was lifted; every server looks for work for all its
-- streams.
CREATE FUNCTION notify_resumed() RETURNS trigger
LANGUAGE plpgsql
AS $$
BEGIN
  PERFORM pg_notify('actionq_' || TG_TABLE_SCHEMA, 'r');
  RETURN NULL;
END
$$;
CREATE TRIGGER pauses_notify_lifted AFTER DELETE ON pauses
  FOR EACH STATEMENT EXECUTE FUNCTION notify_resumed();
