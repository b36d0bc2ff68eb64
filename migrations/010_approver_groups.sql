-- Approver groups: the policy may require that the approvers of an action
-- include some from named groups of the auth file. What an action needs is
-- decided at enqueue and kept on the row, so a policy reload never changes
-- what a PENDING action waits for; each approver's groups are kept as they
-- were when it approved, so a later edit of the auth file does not either.

ALTER TABLE actions
  -- [{"group": "sre-leads", "count": 1, "from": "approvers.dangerous"}, ...]
  ADD COLUMN approval_requirements jsonb NOT NULL DEFAULT '[]' CHECK (jsonb_typeof(approval_requirements) = 'array'),
  -- {"human:alice": ["sre-leads"], "human:bob": []}: each approver's groups.
  ADD COLUMN approver_groups       jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(approver_groups) = 'object');
ALTER TABLE actions_archive
  ADD COLUMN approval_requirements jsonb NOT NULL DEFAULT '[]',
  ADD COLUMN approver_groups       jsonb NOT NULL DEFAULT '{}';

-- True when an action's approvals let it leave PENDING: the quorum of
-- distinct approvers, and for every requirement at least `count` of them
-- in its group. The approve statement and the constraint below share it.
CREATE FUNCTION approvals_complete(required integer, approvers integer, requirements jsonb, approver_groups jsonb) RETURNS boolean
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
  SELECT approvers >= required AND NOT EXISTS (
    SELECT 1 FROM jsonb_array_elements(requirements) AS r
    WHERE (SELECT count(*) FROM jsonb_each(approver_groups) AS e(approver, groups) WHERE e.groups ? (r->>'group')) < (r->>'count')::int)
$$;

-- Approvals beyond the quorum are now possible (the quorum is met but a
-- group is not), so "pending" means "not complete" rather than "fewer
-- approvers than the quorum".
ALTER TABLE actions
  DROP CONSTRAINT pending_until_quorum,
  ADD CONSTRAINT pending_until_approvals_complete
    CHECK (status <> 'pending' OR NOT approvals_complete(approvals_required, cardinality(approvers), approval_requirements, approver_groups));

-- Like the quorum, the requirements bind to what was proposed.
CREATE FUNCTION refuse_requirement_change() RETURNS trigger
LANGUAGE plpgsql
AS $$
BEGIN
  IF NEW.approval_requirements IS DISTINCT FROM OLD.approval_requirements THEN
    RAISE EXCEPTION 'action % cannot change its approval requirements after enqueue', OLD.id
      USING ERRCODE = 'insufficient_privilege';
  END IF;
  RETURN NEW;
END
$$;
CREATE TRIGGER actions_requirements_frozen
  BEFORE UPDATE OF approval_requirements ON actions
  FOR EACH ROW EXECUTE FUNCTION refuse_requirement_change();
