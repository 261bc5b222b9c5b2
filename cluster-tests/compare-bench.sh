#!/bin/bash
# Compares two kiln binaries in ABBA order (A, B, B, A) on a 3-node loopback
# cluster from configs/node*.hcl, a fresh cluster per run: 10 s of registry
# writes (kiln bench registry), then single-row iris predictions through the
# replica's node and through a forwarding node (kiln bench predict).
#
#   bash cluster-tests/compare-bench.sh OLD_KILN NEW_KILN
#
# Build the old one from a worktree, e.g.:
#   git worktree add /tmp/base <rev> && (cd /tmp/base && go build -o bin/kiln ./cmd/kiln)
# Run from the repository root. It kills only the agents it starts and removes
# their data dirs (/tmp/kiln-node1..3).
set -eu
cd "$(dirname "$0")/.."
[ $# -eq 2 ] || { echo "usage: $0 OLD_KILN NEW_KILN" >&2; exit 2; }
stop() { pkill -9 -f "configs/node[123].hcl" || true; rm -rf /tmp/kiln-node{1,2,3}; }
trap stop EXIT
run() { # label binary
  local K=$2
  stop; sleep 1
  for i in 1 2 3; do ($K agent -config configs/node$i.hcl > /tmp/kiln-compare-n$i.log 2>&1 &); done
  export KILN_ADDR=http://127.0.0.11:7070
  for _ in $(seq 60); do $K status >/dev/null 2>&1 && $K models list >/dev/null 2>&1 && break; sleep 0.5; done
  echo "== $1 registry: $($K bench registry -address 127.0.0.11:7070,127.0.0.12:7070,127.0.0.13:7070 -c 64 -d 10s -value-size 256 | tail -1)"
  $K models create iris >/dev/null; $K models push iris ml/testdata/linear/iris.json >/dev/null
  $K deploy -wait 60s -version 1 -replicas 1 iris >/dev/null
  local HI FI
  HI=$($K deployments get -format json iris | python3 -c "import json,sys; print(json.load(sys.stdin)['replica_states'][0]['node_name'][-1])")
  FI=$(( HI % 3 + 1 ))
  echo "== $1 iris via the holder: $($K bench predict -address 127.0.0.1$HI:7070 -c 64 -d 10s -data '[[5.1,3.5,1.4,0.2]]' iris | tail -1)"
  echo "== $1 iris via a forwarder: $($K bench predict -address 127.0.0.1$FI:7070 -c 64 -d 10s -data '[[5.1,3.5,1.4,0.2]]' iris | tail -1)"
}
echo "columns: OPS OPS/S P50_MS P99_MS ERRORS; $(nproc) CPUs"
run "old A1" "$1"; run "new B1" "$2"; run "new B2" "$2"; run "old A2" "$1"
