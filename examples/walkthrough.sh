#!/usr/bin/env bash
# A walk through actionq's API with curl and jq, one step per RPC: an agent
# proposes a guarded action, a human approves it, a worker claims it,
# extends its lease and completes it (after a stale token is refused), and
# the event log tells the story, replayed and followed live.
#
#   npm start                      # in another terminal: 127.0.0.1:50051
#   examples/walkthrough.sh
#
# It speaks the Connect protocol with JSON over HTTP (docs/api.md), so it
# needs only bash, curl, jq and perl (perl frames the stream messages).
# test/examples-walkthrough.test.ts runs it against a real server, with and
# without authentication and TLS.
#
# It reads the same environment as actionctl:
#   ACTIONQ_ADDR             host:port (cleartext), or http://... / https://...
#                            (default 127.0.0.1:50051)
#   ACTIONQ_TOKEN            bearer token, for a server with ACTIONQ_AUTH_FILE:
#                            its principal proposes, claims and reads (roles
#                            producer, worker and viewer, or admin)
#   ACTIONQ_TLS_CA           PEM CA that signed the server's certificate
#   ACTIONQ_TLS_CLIENT_CERT  PEM client certificate and key, for mutual TLS
#   ACTIONQ_TLS_CLIENT_KEY
# and, because nobody may approve their own action:
#   ACTIONQ_APPROVER_TOKEN   with authentication: the token of another
#                            principal with the approver role
set -euo pipefail

me="walkthrough.sh"
die() { echo "$me: $*" >&2; exit 1; }

for tool in curl jq perl; do
  command -v "$tool" >/dev/null || die "$tool is required"
done

trim() { local s="${1-}"; s="${s#"${s%%[![:space:]]*}"}"; printf '%s' "${s%"${s##*[![:space:]]}"}"; }
addr="$(trim "${ACTIONQ_ADDR:-}")"
addr="${addr:-127.0.0.1:50051}"
case "$addr" in
  http://* | https://* | HTTP://* | HTTPS://*) base="${addr%/}" ;;
  *) base="http://$addr" ;;
esac
token="$(trim "${ACTIONQ_TOKEN:-}")"
approver_token="$(trim "${ACTIONQ_APPROVER_TOKEN:-}")"
ca="$(trim "${ACTIONQ_TLS_CA:-}")"
client_cert="$(trim "${ACTIONQ_TLS_CLIENT_CERT:-}")"
client_key="$(trim "${ACTIONQ_TLS_CLIENT_KEY:-}")"

# The same rules as actionctl (src/client-transport.ts).
tls_args=()
if [ -n "$client_cert" ] || [ -n "$client_key" ]; then
  [ -n "$client_cert" ] && [ -n "$client_key" ] || die "ACTIONQ_TLS_CLIENT_CERT and ACTIONQ_TLS_CLIENT_KEY: set both or neither"
fi
for pair in "ACTIONQ_TLS_CA=$ca" "ACTIONQ_TLS_CLIENT_CERT=$client_cert" "ACTIONQ_TLS_CLIENT_KEY=$client_key"; do
  file="${pair#*=}"
  [ -z "$file" ] || [ -r "$file" ] || die "${pair%%=*}=$file: cannot read"
done
if [ -n "$ca$client_cert" ]; then
  case "$base" in https://* | HTTPS://*) ;; *) die "ACTIONQ_TLS_* is set but ACTIONQ_ADDR ($addr) is not an https:// URL" ;; esac
fi
[ -z "$ca" ] || tls_args+=(--cacert "$ca")
[ -z "$client_cert" ] || tls_args+=(--cert "$client_cert" --key "$client_key")

# A project of its own, so that the claim below takes this action and not
# older work waiting in the queue.
project="walkthrough-$(date +%s)-$$"
service=actionq.v1.ActionQueueService
work="$(mktemp -d)"
watcher=""
cleanup() {
  if [ -n "$watcher" ]; then kill "$watcher" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

step() { printf '\n== %s\n' "$*"; }

# curl_to PATH TOKEN CURL-ARGS...: curl with the TLS settings and the bearer
# token. The token goes in through a file descriptor, so it never shows in
# the process list.
curl_to() {
  local path="$1" bearer="$2"
  shift 2
  if [ -n "$bearer" ]; then
    curl -sS "${tls_args[@]}" -H @<(printf 'authorization: Bearer %s\n' "$bearer") "$@" "$base/$path"
  else
    curl -sS "${tls_args[@]}" "$@" "$base/$path"
  fi
}

# Why curl could not reach the server, and what to check.
unreachable() {
  local rc="$1" detail
  detail="$(tr '\n' ' ' <"$work/curl.err")"
  case "$rc" in
    60 | 77) die "$base: ${detail}(set ACTIONQ_TLS_CA to the PEM CA that signed the server's certificate)" ;;
    35 | 52 | 56 | 1 | 8 | 16 | 92) die "$base: ${detail}(does the server speak TLS? ACTIONQ_ADDR must be https://host:port for a TLS server, host:port for a cleartext one)" ;;
    *) die "$base: ${detail}(is the server running? start one with 'npm start', or set ACTIONQ_ADDR)" ;;
  esac
}

# call METHOD_PATH JSON [TOKEN]: one unary Connect call. Sets $status (the
# HTTP status) and $body (the JSON answer or error).
status="" body=""
call() {
  local out rc=0
  out="$(curl_to "$1" "${3-$token}" --max-time 30 -H 'content-type: application/json' \
    --data-binary "$2" -w '\n%{http_code}' 2>"$work/curl.err")" || rc=$?
  [ "$rc" = 0 ] || unreachable "$rc"
  status="${out##*$'\n'}"
  body="${out%$'\n'*}"
}

# One line for a Connect error: code, ErrorInfo reason, message.
error_line() {
  jq -r '"\(.code) \(.details // [] | map(select(.type == "google.rpc.ErrorInfo") | .debug.reason) | first // "-"): \(.message)"' <<<"$1" 2>/dev/null || printf '%s' "$1"
}

# rpc METHOD JSON [TOKEN]: a unary call of the service that must succeed;
# prints the response. Stops the walkthrough with the error otherwise.
rpc() {
  call "$service/$1" "$2" "${3-$token}"
  [ "$status" = 200 ] || refused "$1"
  printf '%s\n' "$body"
}

refused() {
  local line hint=""
  line="$(error_line "$body")"
  case "$line" in
    unauthenticated*) hint=" (set ACTIONQ_TOKEN to a token the server's auth file lists)" ;;
    permission_denied*) hint=" (give the principal the role named above, or use another token)" ;;
  esac
  die "$1 was refused (HTTP $status): $line$hint"
}

# A Connect stream message: a flags byte, the length in four bytes
# (big-endian), then the JSON; and back, one complete message a line.
connect_frame() { perl -0777 -ne 's/\s+\z//; print pack("CN", 0, length), $_'; }
connect_unframe() { perl -e 'binmode STDIN; while (read(STDIN, my $head, 5) == 5) { my ($flags, $n) = unpack("CN", $head); last if read(STDIN, my $m, $n) != $n; print "$m\n" }'; }

step "Is the server up? (grpc.health.v1)"
call grpc.health.v1.Health/Check '{"service": ""}' ""
[ "$status" = 200 ] || refused Health/Check
echo "$base is $(jq -r .status <<<"$body")"

step "Who does the server take us for? (GetCaller)"
caller="$(rpc GetCaller '{}')"
if [ "$(jq -r '.authenticationEnabled // false' <<<"$caller")" = true ]; then
  authenticated=true
  echo "authenticated as $(jq -r .name <<<"$caller") with roles $(jq -r '.roles | join(", ")' <<<"$caller"); the server fills in every identity field"
  [ -n "$approver_token" ] || die "the server authenticates callers, and nobody may approve their own action: set ACTIONQ_APPROVER_TOKEN to the token of another principal with the approver role"
  producer="" approver="" worker=""
else
  authenticated=false
  echo "authentication is off: callers name themselves in identity fields"
  producer="agent:triage" approver="human:bob" worker="worker:walkthrough"
  approver_token="$token"
fi

step "An agent proposes a guarded redeploy: the built-in policy holds it in PENDING for one approval"
enqueued="$(rpc EnqueueAction "$(jq -n --arg project "$project" --arg producer "$producer" '{
  action_type: "redeploy_service",
  project: $project,
  service: "api",
  node: "node-3",
  target_ref: "k8s/prod/api",
  risk_level: "RISK_LEVEL_GUARDED",
  confidence: 0.92,
  created_by: $producer,
  source_refs: ["alert://pagerduty/P123"],
  payload: {image: "api:1.4.2"},
  rollback_ref: "redeploy_service",
  rollback_payload: {image: "api:1.4.1"}
}')")"
id="$(jq -r '.action.id' <<<"$enqueued")"
echo "action $id by $(jq -r '.action.createdBy' <<<"$enqueued") is $(jq -r '.action.status' <<<"$enqueued"), needs $(jq -r '.action.approvalsRequired' <<<"$enqueued") approval(s)"

step "A watcher follows action $id live (WatchEvents, a server stream, in the background)"
# It replays the events after after_id, then waits for new ones. The
# connect-timeout-ms bounds it, should this script die before stopping it.
jq -n --arg id "$id" '{after_id: "0", action_id: $id}' | connect_frame >"$work/watch.req"
curl_to "$service/WatchEvents" "$token" -N -H 'content-type: application/connect+json' -H 'connect-timeout-ms: 60000' \
  --data-binary @"$work/watch.req" -o "$work/watch.out" 2>"$work/watch.err" &
watcher=$!
echo "watching from the start of the log, for action $id only"

step "A human approves it: the quorum is met and it becomes APPROVED"
approved="$(rpc ApproveAction "$(jq -n --arg id "$id" --arg approver "$approver" '{id: $id, approver: $approver, note: "image checked"}')" "$approver_token")"
echo "action $id is $(jq -r '.action.status' <<<"$approved"), approved by $(jq -r '.action.approvedBy' <<<"$approved")"

step "A worker claims it with a 60 s lease (a claim from ClaimAction needs no AckClaim)"
claimed="$(rpc ClaimAction "$(jq -n --arg project "$project" --arg worker "$worker" '{worker: $worker, action_types: ["redeploy_service"], projects: [$project], lease_duration: "60s"}')")"
if [ "$(jq -r '.claim.action.id // empty' <<<"$claimed")" != "$id" ]; then
  die "expected to claim action $id, got: $claimed"
fi
claim_token="$(jq -r '.claim.claimToken' <<<"$claimed")"
echo "$(jq -r '.claim.action.claimedBy' <<<"$claimed") claimed action $id, attempt $(jq -r '.claim.action.attempt' <<<"$claimed"), lease until $(jq -r '.claim.action.claimDeadline' <<<"$claimed")"

step "The work takes longer than planned: extend the lease to 120 s from now"
extended="$(rpc ExtendClaim "$(jq -n --arg id "$id" --arg token "$claim_token" '{id: $id, claim_token: $token, lease_duration: "120s"}')")"
echo "lease until $(jq -r '.claimDeadline' <<<"$extended")"

step "Someone holding another token cannot complete it: FAILED_PRECONDITION, reason CLAIM_TOKEN_MISMATCH"
call "$service/CompleteAction" "$(jq -n --arg id "$id" '{id: $id, claim_token: "00000000-0000-4000-8000-000000000000", result_ref: "forged"}')"
[ "$status" != 200 ] || die "a wrong token completed action $id"
echo "refused (HTTP $status): $(error_line "$body")"

step "The worker completes it with its token"
complete="$(jq -n --arg id "$id" --arg token "$claim_token" '{id: $id, claim_token: $token, result_ref: "deploy://api/1.4.2"}')"
completed="$(rpc CompleteAction "$complete")"
echo "action $id is $(jq -r '.action.status' <<<"$completed"), result $(jq -r '.action.resultRef' <<<"$completed")"

step "Repeating the same CompleteAction (a retry after a lost response) answers the same and writes nothing"
rpc CompleteAction "$complete" | jq -r '"still \(.action.status)"'

step "The event log: the whole history of action $id (ListEvents)"
rpc ListEvents "$(jq -n --arg id "$id" '{action_id: $id}')" | jq -r '.events[] | "\(.id)\t\(.eventType)\t\(.actor)"'

step "What the watcher saw, as it happened"
# Wait (at most 10 s) for the completion to reach it, then stop it.
for _ in $(seq 1 100); do
  connect_unframe <"$work/watch.out" | grep -q '"eventType":"action_completed"' && break
  kill -0 "$watcher" 2>/dev/null || break
  sleep 0.1
done
kill "$watcher" 2>/dev/null || true
wait "$watcher" 2>/dev/null || true
watcher=""
seen="$(connect_unframe <"$work/watch.out" | jq -r 'select(.event) | "\(.event.id)\t\(.event.eventType)\t\(.event.actor)"')"
[ -n "$seen" ] || die "the watcher received no event: $(cat "$work/watch.err") $(connect_unframe <"$work/watch.out")"
printf '%s\n' "$seen"
grep -q 'action_completed' <<<"$seen" || die "the watcher did not see action $id complete"

step "Done: action $id went PENDING -> APPROVED -> CLAIMED -> COMPLETED"
if [ "$authenticated" = true ]; then echo "every identity came from the callers' tokens"; fi
