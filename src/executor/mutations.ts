// What an action would change, in one line an operator can check: built
// from the action's node, service, target and payload. Simulation logs and
// reports it; live mode records it next to what the handler did.
import type { JsonValue } from "@bufbuild/protobuf";
import type { Action } from "../../gen/actionq/v1/action_pb.js";

export const BUILTIN_TYPES = ["redeploy_service", "rerun_healthcheck", "rerun_deployment_stage", "collect_diagnostics"] as const;

/** Longest `result_ref` a simulation reports: well inside the server's
 * limit, and still one readable line. */
export const SIMULATED_RESULT_MAX = 512;

const describers: Record<string, (action: Action) => string> = {
  redeploy_service: (action) => {
    const service = action.service || field(action, "service") || action.targetRef || "(no service named)";
    const image = field(action, "image");
    const version = field(action, "version");
    const release = image ? `with image ${image}` : version && `at version ${version}`;
    return join(`restart service ${service}`, onNode(action), release, targetNote(action, service));
  },
  rerun_healthcheck: (action) => {
    const check = field(action, "check") ?? field(action, "healthcheck") ?? "every check";
    const service = action.service || action.targetRef;
    return join(`rerun healthcheck ${check}`, service && `of service ${service}`, onNode(action), targetNote(action, service));
  },
  rerun_deployment_stage: (action) => {
    const stage = field(action, "stage") ?? "(no stage named)";
    const deployment = field(action, "deployment") ?? field(action, "pipeline") ?? action.targetRef;
    return join(
      `rerun stage ${stage}`,
      deployment && `of deployment ${deployment}`,
      action.service && `for service ${action.service}`,
      onNode(action),
      targetNote(action, deployment),
    );
  },
  collect_diagnostics: (action) => {
    const what = list(action, "collect") ?? list(action, "bundle") ?? "the standard bundle";
    const from = action.node ? `node ${action.node}` : action.service ? `service ${action.service}` : action.targetRef || "(no node named)";
    return join(`collect diagnostics (${what}) from ${from}`, action.node && action.service && `for service ${action.service}`, targetNote(action, from));
  },
};

export function describeMutation(action: Action): string {
  const describe = describers[action.actionType];
  const text = describe
    ? describe(action)
    : join(`run ${action.actionType}`, action.targetRef && `on ${action.targetRef}`, action.service && `for service ${action.service}`, onNode(action));
  return clean(text);
}

export function simulatedResult(mutation: string): string {
  const text = `simulated: would ${mutation}`;
  return text.length <= SIMULATED_RESULT_MAX ? text : `${text.slice(0, SIMULATED_RESULT_MAX - 3)}...`;
}

function field(action: Action, key: string): string | undefined {
  const value: JsonValue | undefined = action.payload?.[key];
  if (typeof value === "string" && value.trim() !== "") return value.trim();
  if (typeof value === "number") return String(value);
  return undefined;
}

function list(action: Action, key: string): string | undefined {
  const value = action.payload?.[key];
  if (Array.isArray(value) && value.length > 0) return value.map((item) => (typeof item === "string" ? item : JSON.stringify(item))).join(", ");
  return field(action, key);
}

function onNode(action: Action): string {
  return action.node ? `on node ${action.node}` : "";
}

/** The target, unless it already named the subject. */
function targetNote(action: Action, subject: string | undefined): string {
  return action.targetRef && action.targetRef !== subject ? `(target ${action.targetRef})` : "";
}

function join(...parts: (string | undefined | false)[]): string {
  return parts.filter(Boolean).join(" ");
}

/** Payload text may hold anything; a result or log line must stay one line
 * the server accepts. */
function clean(text: string): string {
  // eslint-disable-next-line no-control-regex
  return text.replace(/[\u0000-\u001f\u007f]+/g, " ");
}
