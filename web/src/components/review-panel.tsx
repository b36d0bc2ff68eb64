// What the person at the keyboard may do to this action, by role and
// status: approve or reject a PENDING action (approver), cancel, retry or
// roll back (operator; producers may roll back too). The server decides
// every call; its refusal is shown in its own words. One form is open at a
// time, so every label on the page names one control.
import { useMutation, useQueryClient } from "@tanstack/react-query";
import { useState } from "react";
import { useLocation } from "wouter";
import { type Action, ActionStatus, RiskLevel } from "../../../gen/actionq/v1/action_pb.js";
import { api } from "../api.js";
import { actorField, can, useMe } from "../identity.js";
import { keys } from "../live.js";
import { isoTime, relative, toDate } from "../format.js";
import { ErrorNotice } from "./badges.js";
import { ActForm, type Confirmation } from "./review-form.js";

type Act = "approve" | "reject" | "cancel" | "retry" | "rollback";

const CANCELLABLE = new Set([ActionStatus.PENDING, ActionStatus.APPROVED, ActionStatus.CLAIMED]);

function quorumText(approvers: number, required: number): string {
  return `${approvers} of ${required}`;
}

export function ReviewControls({ action }: { action: Action }) {
  const me = useMe();
  const queryClient = useQueryClient();
  const [, navigate] = useLocation();
  const [open, setOpen] = useState<Act | null>(null);
  const [done, setDone] = useState<string | undefined>(undefined);

  const act = useMutation({
    mutationFn: async ({ kind, note }: { kind: Act; note: string }): Promise<string> => {
      const id = action.id;
      switch (kind) {
        case "approve": {
          const { action: after } = await api.approveAction({ id, approver: actorField(me), note });
          if (!after) return "Approved.";
          return after.status === ActionStatus.APPROVED
            ? `You approved action #${id}. The quorum is met (${quorumText(after.approvers.length, after.approvalsRequired)}): it is approved and workers may claim it.`
            : `You approved action #${id}: ${quorumText(after.approvers.length, after.approvalsRequired)} approvals; it ${after.approvalsNeeded || `waits for ${after.approvalsRequired - after.approvers.length} more`}.`;
        }
        case "reject":
          await api.rejectAction({ id, actor: actorField(me), reason: note });
          return `You rejected action #${id}. It will not run.`;
        case "cancel":
          await api.cancelAction({ id, actor: actorField(me), reason: note });
          return `You cancelled action #${id}.`;
        case "retry":
          await api.retryAction({ id, actor: actorField(me), reason: note });
          return `Action #${id} is back in the queue for another attempt.`;
        case "rollback": {
          const { rollback, created } = await api.rollbackAction({ id, actor: actorField(me), reason: note });
          if (rollback) navigate(`/actions/${rollback.id}`);
          return created ? `Rollback action #${rollback?.id} proposed.` : `A rollback is already under way: action #${rollback?.id}.`;
        }
      }
    },
    onSuccess: (message) => {
      setDone(message);
      setOpen(null);
    },
    onSettled: () => {
      void queryClient.invalidateQueries({ queryKey: keys.action(action.id) });
      void queryClient.invalidateQueries({ queryKey: keys.inbox });
      void queryClient.invalidateQueries({ queryKey: keys.actions });
    },
  });

  const openForm = (kind: Act) => {
    act.reset();
    setDone(undefined);
    setOpen(kind);
  };

  const pending = action.status === ActionStatus.PENDING;
  const mayReview = can(me, "approver") && pending;
  const mayCancel = can(me, "operator") && CANCELLABLE.has(action.status);
  const mayRetry = can(me, "operator") && action.status === ActionStatus.FAILED;
  const mayRollback =
    (can(me, "operator") || can(me, "producer")) &&
    action.rollbackRef !== "" &&
    (action.status === ActionStatus.COMPLETED || action.status === ActionStatus.FAILED);
  const alreadyApproved = action.approvers.includes(me.name);
  const ownAction = action.createdBy === me.name;
  const expiry = toDate(action.approvalExpireTime);
  const expired = pending && expiry !== undefined && expiry.getTime() <= Date.now();

  // DANGEROUS reviews are typed out: the type, and the target when it has one.
  const confirmations: Confirmation[] =
    action.riskLevel === RiskLevel.DANGEROUS
      ? [
          { what: "the action type", expected: action.actionType },
          ...(action.targetRef.trim() !== "" ? [{ what: "the target", expected: action.targetRef }] : []),
        ]
      : [];

  const nothingToDo = !mayReview && !mayCancel && !mayRetry && !mayRollback;
  if (nothingToDo && !done && !act.error) return null;

  const form = (kind: Act) => {
    const common = { busy: act.isPending, onClose: () => setOpen(null), onSubmit: (note: string) => act.mutate({ kind, note }) };
    switch (kind) {
      case "approve":
        return (
          <ActForm
            key="approve"
            {...common}
            legend={`Approve action #${action.id}`}
            noteLabel="Note"
            noteRequired={false}
            noteHint="Kept on the approval event for everyone who reads this action later."
            confirmations={confirmations}
            submitLabel="Confirm approval"
            tone="primary"
          />
        );
      case "reject":
        return (
          <ActForm
            key="reject"
            {...common}
            legend={`Reject action #${action.id}`}
            noteLabel="Reason"
            noteRequired
            noteHint="Kept as the action's failure reason and on the rejection event."
            confirmations={confirmations}
            submitLabel="Confirm rejection"
            tone="danger"
          />
        );
      case "cancel":
        return (
          <ActForm
            key="cancel"
            {...common}
            legend={`Cancel action #${action.id}`}
            noteLabel="Reason"
            noteRequired
            submitLabel="Confirm cancellation"
            tone="danger"
          />
        );
      case "retry":
        return (
          <ActForm
            key="retry"
            {...common}
            legend={`Retry action #${action.id}`}
            noteLabel="Reason"
            noteRequired
            noteHint="Grants one more attempt; the action goes back to the queue."
            submitLabel="Confirm retry"
            tone="primary"
          />
        );
      case "rollback":
        return (
          <ActForm
            key="rollback"
            {...common}
            legend={`Roll back action #${action.id} with ${action.rollbackRef}`}
            noteLabel="Reason"
            noteRequired={false}
            noteHint="The rollback is a new action; the approval policy applies to it."
            submitLabel="Propose the rollback"
            tone="danger"
          />
        );
    }
  };

  return (
    <div className="review-controls">
      {mayReview && (
        <div className="review-warnings">
          {ownAction && (
            <p className="notice">You proposed this action. The server does not let anyone approve their own action; another approver must review it.</p>
          )}
          {alreadyApproved && <p className="notice">You have approved this action already; it waits for other approvers.</p>}
          {expired && expiry && (
            <p className="notice error">
              The approval window closed {relative(expiry)} ({isoTime(expiry)}). The server refuses approvals now; it will reject the action.
            </p>
          )}
        </div>
      )}
      {open === null && (
        <fieldset className="review-buttons" aria-label="What you can do">
          {mayReview && !alreadyApproved && (
            <button type="button" className="primary" onClick={() => openForm("approve")}>
              Approve
            </button>
          )}
          {mayReview && (
            <button type="button" className="danger" onClick={() => openForm("reject")}>
              Reject
            </button>
          )}
          {mayCancel && (
            <button type="button" onClick={() => openForm("cancel")}>
              Cancel action
            </button>
          )}
          {mayRetry && (
            <button type="button" onClick={() => openForm("retry")}>
              Retry
            </button>
          )}
          {mayRollback && (
            <button type="button" onClick={() => openForm("rollback")}>
              Roll back
            </button>
          )}
        </fieldset>
      )}
      {open !== null && form(open)}
      <ErrorNotice error={act.error} prefix="The server refused" />
      {done && (
        <p className="notice ok" role="status">
          {done}
        </p>
      )}
    </div>
  );
}
