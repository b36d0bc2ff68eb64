#!/usr/bin/python3
"""Completes one claimed action with a given claim token and prints the
outcome as one JSON line: the action's status when the server accepted it,
or the refusal's gRPC code, message and google.rpc.ErrorInfo reason.

    complete_action.py --server 127.0.0.1:50051 --id 7 --token TOKEN --result s3://bucket/key

The bearer token and TLS settings come from the same environment variables
as actionctl's (ACTIONQ_TOKEN, ACTIONQ_TLS_CA, ACTIONQ_TLS_CLIENT_CERT,
ACTIONQ_TLS_CLIENT_KEY); use --server https://HOST:PORT for TLS.

Exit status: 0 when completed, 1 when refused, 2 when the settings are
wrong. A token whose lease ran out (the action was claimed again since) is
refused with FAILED_PRECONDITION and reason CLAIM_TOKEN_MISMATCH, and
changes nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

import grpc

from actionq_client import Endpoint, SetupError, action_pb2, api, connect, describe


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Complete one claimed action and print the outcome as JSON.")
    parser.add_argument("--server", default=os.environ.get("ACTIONQ_ADDR", "").strip() or "127.0.0.1:50051", help="HOST:PORT, or https://HOST:PORT for TLS (default $ACTIONQ_ADDR or 127.0.0.1:50051)")
    parser.add_argument("--id", type=int, required=True, help="the action's id")
    parser.add_argument("--token", required=True, help="the claim token")
    parser.add_argument("--result", default="", help="result_ref to record")
    args = parser.parse_args(argv)
    try:
        args.server = Endpoint.parse(args.server)
    except SetupError as error:
        parser.error(str(error))
    return args


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    channel, stub = connect(args.server)
    with channel:
        try:
            response = stub.CompleteAction(api.CompleteActionRequest(id=args.id, claim_token=args.token, result_ref=args.result), timeout=10)
        except grpc.RpcError as error:
            print(json.dumps({"ok": False, **describe(error).to_json()}), flush=True)
            return 1
    status = action_pb2.ActionStatus.Name(response.action.status)
    print(json.dumps({"ok": True, "id": response.action.id, "status": status, "attempt": response.action.attempt}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
