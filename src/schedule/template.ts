// A schedule's template is an EnqueueActionRequest, checked as EnqueueAction
// checks one: the same field checks (shared with src/api/service/producing.ts)
// and the same policy proposal, so a scheduled action is what the owner
// would have enqueued by hand at the tick. At creation the errors name the
// field under `schedule.template`; at a tick they become a FAILED tick.
import { fromJson, toJson } from "@bufbuild/protobuf";
import type { JsonObject } from "@bufbuild/protobuf";
import { type EnqueueActionRequest, EnqueueActionRequestSchema } from "../../gen/actionq/v1/action_queue_service_pb.js";
import { enqueueFields } from "../api/service/producing.js";
import type * as check from "../api/validate.js";
import { ActionqError, invalidField } from "../errors.js";
import type { PolicyHolder } from "../policy/policy.js";
import { type ProposedFields, proposeAction } from "../policy/proposals.js";
import type { NewAction } from "../store/actions.js";
import type { ScheduleRow } from "../store/schedules.js";

export const TEMPLATE_FIELD = "schedule.template";

/** The fields a schedule sets itself on each action. */
const SET_BY_SCHEDULE: [keyof EnqueueActionRequest, string, string][] = [
  ["createdBy", "created_by", "the schedule's owner"],
  ["idempotencyKey", "idempotency_key", "one per tick"],
  ["runAfter", "run_after", "the tick time plus jitter"],
  ["supersedesId", "supersedes_id", "nothing: use the CANCEL_OTHER overlap policy"],
];

export class TemplateActions {
  constructor(
    private readonly bound: ReturnType<typeof check.bounded>,
    private readonly maxAttemptsDefault: number,
    private readonly policy: PolicyHolder,
    /** Whether the owner may still enqueue it (src/auth/access.ts). */
    private readonly ownerCheck: (owner: string, project: string, actionType: string) => ActionqError | undefined = () => undefined,
    private readonly random: () => number = Math.random,
  ) {}

  /** Checks a template for `owner` as EnqueueAction would, throwing
   * INVALID_ARGUMENT (or the policy's refusal) naming the field under
   * `schedule.template`; `allowNew` is the caller's scope check. Returns
   * the template as stored (proto JSON). */
  check(
    template: EnqueueActionRequest | undefined,
    owner: string,
    allowNew: (project: string, actionType: string) => void,
  ): { json: JsonObject; project: string } {
    if (!template) throw invalidField(TEMPLATE_FIELD, "is required: the EnqueueActionRequest each tick sends");
    for (const [key, field, setTo] of SET_BY_SCHEDULE) {
      const value = template[key];
      if (value !== undefined && value !== "" && value !== 0n) {
        throw invalidField(`${TEMPLATE_FIELD}.${field}`, `must be empty: the schedule sets it (${setTo})`);
      }
    }
    try {
      const fields = enqueueFields(this.bound, this.maxAttemptsDefault, template, owner);
      allowNew(fields.project, fields.actionType);
      proposeAction(this.policy.current, fields, null, template.maxAttempts);
      return { json: toJson(EnqueueActionRequestSchema, template) as JsonObject, project: fields.project };
    } catch (error) {
      if (error instanceof ActionqError) throw underTemplate(error);
      throw error;
    }
  }

  /** The action `schedule` enqueues for `tick`, decided by the policy in
   * force now. Throws ActionqError when the template no longer passes. */
  build(schedule: ScheduleRow, tick: Date, now: Date): NewAction {
    const template = fromJson(EnqueueActionRequestSchema, schedule.template);
    const fields: ProposedFields = enqueueFields(this.bound, this.maxAttemptsDefault, template, schedule.owner);
    const refused = this.ownerCheck(schedule.owner, fields.project, fields.actionType);
    if (refused) throw refused;
    const jitterMs = Number(schedule.jitter_ms);
    // The tick time stays nominal; only when the action may run moves.
    fields.runAfter = jitterMs > 0 ? new Date(tick.getTime() + Math.floor(this.random() * (jitterMs + 1))) : null;
    return { ...proposeAction(this.policy.current, fields, null, template.maxAttempts, now), schedule: { key: schedule.key, id: schedule.id, tickTime: tick } };
  }
}

/** The error of a template field, named as the schedule's field:
 * `schedule.template.action_type: ...`. */
function underTemplate(error: ActionqError): ActionqError {
  const field = error.metadata.field;
  if (field === undefined)
    return new ActionqError(error.kind, error.reason, `${TEMPLATE_FIELD}: ${error.message}`, { ...error.metadata, field: TEMPLATE_FIELD });
  const message = error.message.startsWith(`${field}:`) ? error.message.slice(field.length + 1).trimStart() : error.message;
  return new ActionqError(error.kind, error.reason, `${TEMPLATE_FIELD}.${field}: ${message}`, { ...error.metadata, field: `${TEMPLATE_FIELD}.${field}` });
}
