// The flags that say what an action is: `add` sends them as one
// EnqueueActionRequest, and `schedule create`/`update` keep them as the
// schedule's template. One definition, so that a schedule's action is
// written exactly as an added one.
import type { JsonObject } from "@bufbuild/protobuf";
import { type Command, Option } from "commander";
import type { RiskLevel } from "../../gen/actionq/v1/action_pb.js";
import type { EnqueueActionRequest } from "../../gen/actionq/v1/action_queue_service_pb.js";
import * as parse from "./parse.js";

export interface TemplateOptions {
  type?: string;
  project?: string;
  target?: string;
  source?: string[];
  payload?: JsonObject;
  priority?: number;
  risk?: RiskLevel;
  confidence?: number;
  approvalRequired?: boolean;
  correlationId?: string;
  node?: string;
  service?: string;
  parent?: bigint;
  rollback?: string;
  rollbackPayload?: JsonObject;
  maxAttempts?: number;
  concurrencyKey?: string;
  concurrencyLimit?: number;
}

/** Request fields as a plain object, to spread over a current template. */
export type TemplateInit = Partial<Omit<EnqueueActionRequest, "$typeName" | "$unknown">>;

/** The action's flags on `command`. `typeRequired`: `add` and `schedule
 * create` need --type; `schedule update` keeps the current one when left
 * out. `negatable` adds --no-approval-required, for update to turn it off. */
export function templateOptions(command: Command, { typeRequired, negatable = false }: { typeRequired: boolean; negatable?: boolean }): Command {
  const type = new Option("--type <type>", `action type, such as redeploy_service${typeRequired ? " (required)" : ""}`);
  command
    .addOption(typeRequired ? type.makeOptionMandatory() : type)
    .option("--project <project>", "project or tenant")
    .option("--target <ref>", "what the action acts on")
    .option("--source <ref>", "where the proposal came from (repeatable)", parse.collectText)
    .option("--payload <json>", "arguments for the worker, a JSON object", parse.jsonObject)
    .option("--priority <n>", "smaller is claimed first (default 0)", parse.int32)
    .addOption(
      new Option(
        "--risk <level>",
        `risk level: ${parse.risk.names.join(", ")}; unset, the level the policy registers for the type applies (its default_risk for an unregistered type: see \`actionctl policy show\`); a producer may raise it, not lower it`,
      ).argParser(parse.risk.parse),
    )
    .option("--confidence <x>", "the producer's confidence, from 0 to 1", parse.number)
    .option("--approval-required", "wait for an approval even when the policy would approve it");
  if (negatable) command.option("--no-approval-required", "let the policy approve it by itself again");
  return command
    .option("--max-attempts <n>", "how many retryable failures it may have before it stays FAILED (server default ACTIONQ_MAX_ATTEMPTS)", parse.positive)
    .option(
      "--concurrency-key <key>",
      "run at most --concurrency-limit actions with this key at a time, in priority order (types the policy keys get theirs from the policy)",
    )
    .option("--concurrency-limit <n>", "how many actions with --concurrency-key may run at once (default 1)", parse.positive)
    .option("--correlation-id <id>", "ties related actions together")
    .option("--node <node>", "the node it targets")
    .option("--service <service>", "the service it targets")
    .option("--parent <id>", "make it a child of this action", parse.id)
    .option("--rollback <ref>", "the action type of the reverse action, if it must be undone")
    .option("--rollback-payload <json>", "the reverse action's payload, a JSON object (needs --rollback)", parse.jsonObject);
}

/** The request fields the flags give; a flag left out is left out here
 * too (undefined), so that an update can keep the current value. */
export function templateFields(o: TemplateOptions): TemplateInit {
  const fields: TemplateInit = {
    actionType: o.type,
    project: o.project,
    targetRef: o.target,
    sourceRefs: o.source,
    payload: o.payload,
    priority: o.priority,
    riskLevel: o.risk,
    confidence: o.confidence,
    approvalRequired: o.approvalRequired,
    correlationId: o.correlationId,
    node: o.node,
    service: o.service,
    parentId: o.parent,
    rollbackRef: o.rollback,
    rollbackPayload: o.rollbackPayload,
    maxAttempts: o.maxAttempts,
    concurrencyKey: o.concurrencyKey,
    concurrencyLimit: o.concurrencyLimit,
  };
  return Object.fromEntries(Object.entries(fields).filter(([, value]) => value !== undefined)) as TemplateInit;
}
