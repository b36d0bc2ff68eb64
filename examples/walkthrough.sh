#!/usr/bin/env bash
# A walk through actionq's API with grpcurl, one step per RPC: an agent
# proposes a guarded action, a human approves it, a worker claims it,
# extends its lease and completes it (after a stale token is refused), and
# the event log tells the story, replayed and then followed live.
#
#   npm start                      # in another terminal: 127.0.0.1:50051
#   examples/walkthrough.sh        # or ACTIONQ_ADDR=HOST:PORT examples/walkthrough.sh
#
# Needs grpcurl and jq. The server has reflection, so no .proto files are
# needed.
#
# Note: grpcurl could not be installed where this script was written, so it
# has not been run with grpcurl. It follows proto/actionq/v1/*.proto and
# grpcurl's JSON conventions: request fields by their proto names, responses
# in lowerCamelCase, int64 as strings, enums by name, a Duration as "60s".
# The request bodies were checked against a live server through its Connect
# JSON protocol, which uses the same JSON mapping.
set -euo pipefail

addr="${ACTIONQ_ADDR:-127.0.0.1:50051}"
service=actionq.v1.ActionQueueService
# A project of its own, so that the claim below takes this action and not
# older work waiting in the queue.
project="walkthrough-$(date +%s)"

for tool in grpcurl jq; do
  command -v "$tool" >/dev/null || { echo "walkthrough.sh: $tool is required" >&2; exit 1; }
done

step() { printf '\n== %s\n' "$*"; }

# rpc METHOD JSON: one unary call of the service; prints the response (JSON).
rpc() {
  grpcurl -plaintext -d "$2" "$addr" "$service/$1"
}

step "Is the server up? (grpc.health.v1)"
grpcurl -plaintext -d '{"service":""}' "$addr" grpc.health.v1.Health/Check

step "An agent proposes a guarded redeploy: the built-in policy holds it in PENDING for one approval"
enqueued="$(rpc EnqueueAction "$(jq -n --arg project "$project" '{
  action_type: "redeploy_service",
  project: $project,
  service: "api",
  node: "node-3",
  target_ref: "k8s/prod/api",
  risk_level: "RISK_LEVEL_GUARDED",
  confidence: 0.92,
  created_by: "agent:triage",
  source_refs: ["alert://pagerduty/P123"],
  payload: {image: "api:1.4.2"},
  rollback_ref: "redeploy_service",
  rollback_payload: {image: "api:1.4.1"}
}')")"
id="$(jq -r '.action.id' <<<"$enqueued")"
echo "action $id is $(jq -r '.action.status' <<<"$enqueued"), needs $(jq -r '.action.approvalsRequired' <<<"$enqueued") approval(s)"

step "A human approves it: the quorum is met and it becomes APPROVED"
approved="$(rpc ApproveAction "$(jq -n --arg id "$id" '{id: $id, approver: "human:bob", note: "image checked"}')")"
echo "action $id is $(jq -r '.action.status' <<<"$approved"), approved by $(jq -r '.action.approvedBy' <<<"$approved")"

step "A worker claims it with a 60 s lease (a claim from ClaimAction needs no AckClaim)"
claimed="$(rpc ClaimAction "$(jq -n --arg project "$project" '{worker: "worker:walkthrough", action_types: ["redeploy_service"], projects: [$project], lease_duration: "60s"}')")"
if [ "$(jq -r '.claim.action.id // empty' <<<"$claimed")" != "$id" ]; then
  echo "walkthrough.sh: expected to claim action $id, got: $claimed" >&2
  exit 1
fi
token="$(jq -r '.claim.claimToken' <<<"$claimed")"
echo "claimed action $id, attempt $(jq -r '.claim.action.attempt' <<<"$claimed"), token $token, lease until $(jq -r '.claim.action.claimDeadline' <<<"$claimed")"

step "The work takes longer than planned: extend the lease to 120 s from now"
extended="$(rpc ExtendClaim "$(jq -n --arg id "$id" --arg token "$token" '{id: $id, claim_token: $token, lease_duration: "120s"}')")"
echo "lease until $(jq -r '.claimDeadline' <<<"$extended")"

step "Someone holding another token cannot complete it: FAILED_PRECONDITION, reason CLAIM_TOKEN_MISMATCH"
# -format-error prints the status as JSON, with its google.rpc.ErrorInfo.
if grpcurl -plaintext -format-error \
  -d "$(jq -n --arg id "$id" '{id: $id, claim_token: "00000000-0000-4000-8000-000000000000", result_ref: "forged"}')" \
  "$addr" "$service/CompleteAction"; then
  echo "walkthrough.sh: a wrong token completed the action" >&2
  exit 1
fi

step "The worker completes it with its token"
completed="$(rpc CompleteAction "$(jq -n --arg id "$id" --arg token "$token" '{id: $id, claim_token: $token, result_ref: "deploy://api/1.4.2"}')")"
echo "action $id is $(jq -r '.action.status' <<<"$completed"), result $(jq -r '.action.resultRef' <<<"$completed")"

step "Repeating the same CompleteAction (a retry after a lost response) answers the same and writes nothing"
rpc CompleteAction "$(jq -n --arg id "$id" --arg token "$token" '{id: $id, claim_token: $token, result_ref: "deploy://api/1.4.2"}')" | jq -r '"still \(.action.status)"'

step "The event log: the whole history of action $id"
events="$(rpc ListEvents "$(jq -n --arg id "$id" '{action_id: $id}')")"
jq -r '.events[] | "\(.id)\t\(.eventType)\t\(.actor)"' <<<"$events"

step "Follow the log live (WatchEvents replays after the cursor, then waits for new events; stopped after 3 s)"
# The first message is a heartbeat carrying the cursor; ending the stream
# with -max-time makes grpcurl report DeadlineExceeded, which is expected.
grpcurl -plaintext -max-time 3 -d "$(jq -n --arg id "$id" '{after_id: "0", action_id: $id}')" \
  "$addr" "$service/WatchEvents" || true

step "Done: action $id went PENDING -> APPROVED -> CLAIMED -> COMPLETED"
