// Policy: the approval policy this server applies, its version and where
// it was read from; a summary of what a person asks of it (which actions
// run without a human, how many approvals the others need and for how
// long they may wait, the known action types and the rules), and the
// whole policy as JSON. Operators may make the server read its file again.
import { useMutation, useQuery, useQueryClient } from "@tanstack/react-query";
import { api } from "../api.js";
import { ErrorNotice } from "../components/badges.js";
import { PolicySummary } from "../components/ops-policy-summary.js";
import { prettyJson } from "../format.js";
import { actorField, can, useMe } from "../identity.js";
import { keys } from "../live.js";
import "../components/ops-shared.css";
import "./policy.css";

export function PolicyPage() {
  const me = useMe();
  const queryClient = useQueryClient();
  const policy = useQuery({ queryKey: keys.policy, queryFn: () => api.getPolicy({}) });
  const reload = useMutation({
    mutationFn: () => api.reloadPolicy({ actor: actorField(me) }),
    onSettled: () => queryClient.invalidateQueries({ queryKey: keys.policy }),
  });
  const data = policy.data;
  return (
    <div className="ops-policy">
      <h1>Policy</h1>
      <ErrorNotice error={policy.error} prefix="The policy could not be loaded" />
      {policy.isPending && <p aria-busy="true">Loading the policy…</p>}
      {data && (
        <dl className="fields ops-policy-head">
          <dt>Version</dt>
          <dd className="mono">{data.policyVersion}</dd>
          <dt>Source</dt>
          <dd className="mono">{data.source || <span className="muted">built-in (no policy file)</span>}</dd>
        </dl>
      )}
      {can(me, "operator") && (
        <div className="ops-row ops-reload">
          <button type="button" onClick={() => reload.mutate()} disabled={reload.isPending}>
            {reload.isPending ? "Reloading…" : "Reload policy"}
          </button>
          <span className="muted">Reads the policy file again on this server, as SIGHUP does.</span>
        </div>
      )}
      <ErrorNotice error={reload.error} prefix="Not reloaded; the policy in force stays" />
      {reload.data && (
        <p className="notice ok" role="status">
          {reload.data.changed
            ? `Reloaded: version ${reload.data.policyVersion} is now in force.`
            : `The file has not changed; version ${reload.data.policyVersion} stays in force.`}
        </p>
      )}
      {data?.policy && <PolicySummary policy={data.policy} />}
      {data?.policy && (
        <section aria-labelledby="policy-json-heading">
          <h2 id="policy-json-heading">The policy in force, with every default</h2>
          {/* biome-ignore lint/a11y/noNoninteractiveTabindex: scrollable, so focusable for keyboard scrolling (axe scrollable-region-focusable); the enclosing section names it */}
          <pre className="ops-policy-json" tabIndex={0}>
            {prettyJson(data.policy)}
          </pre>
        </section>
      )}
    </div>
  );
}
