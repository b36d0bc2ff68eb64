#!/usr/bin/env bash
# Generates the Python messages and gRPC stubs for the actionq contract with
# Debian's protoc and grpc_python_plugin:
#
#   examples/python-worker/generate.sh [OUT_DIR]    (default: examples/python-worker/gen)
#
# OUT_DIR then holds the messages (*_pb2.py, with *_pb2.pyi type stubs) and
# the service stubs (*_pb2_grpc.py) of actionq/v1, and google.rpc.ErrorInfo.
# The scripts here find gen/ next to them; put any other OUT_DIR on
# PYTHONPATH.
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
out="${1:-$here/gen}"
# The well-known types (timestamp, duration, struct) bundled with protoc.
wkt_include="${PROTOC_INCLUDE:-/usr/include}"
plugin="${GRPC_PYTHON_PLUGIN:-/usr/bin/grpc_python_plugin}"

for tool in protoc "$plugin"; do
  if ! command -v "$tool" >/dev/null; then
    echo "generate.sh: $tool not found; apt-get install -y protobuf-compiler protobuf-compiler-grpc" >&2
    exit 1
  fi
done
if [ ! -f "$wkt_include/google/protobuf/timestamp.proto" ]; then
  echo "generate.sh: no well-known types under $wkt_include/google/protobuf (set PROTOC_INCLUDE)" >&2
  exit 1
fi

mkdir -p "$out"
out="$(cd "$out" && pwd)"
cd "$repo/proto"
protoc \
  -I . -I "$wkt_include" \
  --plugin=protoc-gen-grpc_python="$plugin" \
  --python_out="$out" \
  --pyi_out="$out" \
  --grpc_python_out="$out" \
  actionq/v1/*.proto google/rpc/error_details.proto
echo "generated Python stubs in $out"
