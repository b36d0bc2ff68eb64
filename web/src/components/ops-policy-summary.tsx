// What a person wants to know of the approval policy, read from the JSON
// GetPolicy returns (src/policy/policy.ts `Policy`, defaults filled in).
// The reading is defensive: a key this console does not know is still in
// the JSON below the summary, never hidden.
import type { JsonObject, JsonValue } from "@bufbuild/protobuf";
import { span } from "../format.js";

const RISKS = ["safe", "guarded", "dangerous"] as const;
type Risk = (typeof RISKS)[number];
const RANK: Record<Risk, number> = { safe: 0, guarded: 1, dangerous: 2 };
const MATCH_KEYS = [
  ["action_types", "types"],
  ["projects", "projects"],
  ["nodes", "nodes"],
  ["services", "services"],
  ["producers", "producers"],
] as const;

function object(value: JsonValue | undefined): JsonObject {
  return value !== null && typeof value === "object" && !Array.isArray(value) ? value : {};
}
function text(value: JsonValue | undefined): string | undefined {
  return typeof value === "string" ? value : undefined;
}
function num(value: JsonValue | undefined): number | undefined {
  return typeof value === "number" ? value : undefined;
}
function isRisk(value: JsonValue | undefined): value is Risk {
  return typeof value === "string" && (RISKS as readonly string[]).includes(value);
}

function RiskName({ risk }: { risk: string }) {
  return <span className={`badge risk-${risk}`}>{risk}</span>;
}

/** Whether an action of this risk may run with no human, under the mode. */
function withoutHuman(mode: string, risk: Risk, minConfidence: number | undefined): string {
  switch (mode) {
    case "recommend-only":
      return "Never: every action waits for approval";
    case "standard":
      return risk === "safe" ? "Yes" : "No";
    case "autonomous":
      if (risk === "dangerous") return "Never";
      if (risk === "safe") return `When its confidence is at least ${minConfidence ?? "the threshold"}`;
      return "Only when an allow rule matches, with that rule's confidence bar";
    default:
      return `Depends on mode ${mode}`;
  }
}

/** "1 from sre-leads, 2 from dba": an approver group requirement list. */
function groupsText(value: JsonValue | undefined): string | undefined {
  if (!Array.isArray(value) || value.length === 0) return undefined;
  return value
    .map(object)
    .map((entry) => `${num(entry.count) ?? 1} from ${text(entry.group) ?? "?"}`)
    .join(", ");
}

export function PolicySummary({ policy }: { policy: JsonObject }) {
  const mode = text(policy.mode) ?? "unknown";
  const quorum = object(policy.quorum);
  const ttl = object(policy.approval_ttl);
  const approvers = object(policy.approvers);
  const minConfidence = num(object(policy.autonomous).min_confidence);
  const defaultRisk = text(policy.default_risk);
  const types = Object.entries(object(policy.action_types))
    .filter((entry): entry is [string, Risk] => isRisk(entry[1]))
    .sort(([a, ra], [b, rb]) => RANK[rb] - RANK[ra] || a.localeCompare(b));
  const rules = Array.isArray(policy.rules) ? policy.rules.map(object) : [];

  return (
    <>
      <section aria-labelledby="policy-approvals-heading">
        <h2 id="policy-approvals-heading">Approvals by risk level</h2>
        <p>
          Mode <strong className="mono">{mode}</strong>
          {text(policy.name) && (
            <>
              , policy <strong className="mono">{text(policy.name)}</strong>
            </>
          )}
          . An action also waits when its producer asks for an approval, when a forbid rule matches it, or while auto-approval is paused.
        </p>
        <div className="ops-table-wrap">
          <table className="ops-table">
            <caption className="visually-hidden">What each risk level needs</caption>
            <thead>
              <tr>
                <th scope="col">Risk</th>
                <th scope="col">Runs without a human</th>
                <th scope="col" className="num">
                  Approvals needed
                </th>
                <th scope="col">Approvers from groups</th>
                <th scope="col">Approval expires after</th>
              </tr>
            </thead>
            <tbody>
              {RISKS.map((risk) => {
                const seconds = num(ttl[risk]);
                return (
                  <tr key={risk}>
                    <th scope="row">
                      <RiskName risk={risk} />
                    </th>
                    <td>{withoutHuman(mode, risk, minConfidence)}</td>
                    <td className="num">{num(quorum[risk]) ?? "—"}</td>
                    <td>{groupsText(approvers[risk]) ?? <span className="muted">any</span>}</td>
                    <td>{seconds === undefined ? "—" : span(seconds * 1000)}</td>
                  </tr>
                );
              })}
            </tbody>
          </table>
        </div>
      </section>

      <section aria-labelledby="policy-types-heading">
        <h2 id="policy-types-heading">Action types and their risk</h2>
        <p>
          A type not listed here is {defaultRisk ? <RiskName risk={defaultRisk} /> : "given the default risk"}. A producer may raise an action's risk, never
          lower it below its type's.
        </p>
        <ul className="ops-type-list">
          {types.map(([type, risk]) => (
            <li key={type}>
              <span className="mono">{type}</span> <RiskName risk={risk} />
            </li>
          ))}
        </ul>
      </section>

      <section aria-labelledby="policy-rules-heading">
        <h2 id="policy-rules-heading">Rules</h2>
        {rules.length === 0 ? (
          <p className="muted">No rules: the mode and the risk levels decide alone.</p>
        ) : (
          <div className="ops-table-wrap">
            <table className="ops-table">
              <caption className="visually-hidden">Policy rules, in order</caption>
              <thead>
                <tr>
                  <th scope="col">Rule</th>
                  <th scope="col">Effect</th>
                  <th scope="col">Matches</th>
                  <th scope="col" className="num">
                    Min. confidence
                  </th>
                  <th scope="col">Approvers from groups</th>
                </tr>
              </thead>
              <tbody>
                {rules.map((rule, index) => {
                  const matches = MATCH_KEYS.flatMap(([key, label]) => {
                    const list = rule[key];
                    return Array.isArray(list) ? [`${label}: ${list.map(String).join(", ")}`] : [];
                  });
                  return (
                    <tr key={text(rule.name) ?? index}>
                      <th scope="row" className="mono">
                        {text(rule.name)}
                      </th>
                      <td className={rule.effect === "forbid" ? "error" : undefined}>{text(rule.effect)}</td>
                      <td>{matches.length === 0 ? <span className="muted">every action</span> : matches.join("; ")}</td>
                      <td className="num">{num(rule.min_confidence) ?? (rule.effect === "allow" ? (minConfidence ?? "—") : "—")}</td>
                      <td>{groupsText(rule.approvers) ?? <span className="muted">—</span>}</td>
                    </tr>
                  );
                })}
              </tbody>
            </table>
          </div>
        )}
      </section>
    </>
  );
}
