#!/usr/bin/env bash
# Baseline for Kiln's write benchmark: a stock 3-member etcd 3.4 cluster on
# loopback (127.0.0.21/22/23, client :2379, peer :2380), default durability
# (fsync per WAL write), driven by the Go load generator in this directory.
#
# Usage: bash cluster-tests/etcdbaseline/run.sh [load-generator flags]
#   defaults: -c 64 -d 10s -value-size 256 -format table
#   e.g.      bash cluster-tests/etcdbaseline/run.sh -format json
# Env: ETCD_BASELINE_TMP  parent dir for data dirs/logs (default: $TMPDIR or /tmp;
#                         must be a real disk, not tmpfs, or fsync is a no-op).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
IPS=(127.0.0.21 127.0.0.22 127.0.0.23)
NAMES=(n1 n2 n3)

if ! command -v etcd >/dev/null 2>&1; then
	echo "etcd not found; installing etcd-server via apt-get" >&2
	SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
	$SUDO apt-get update
	$SUDO apt-get install -y etcd-server
fi
command -v go >/dev/null 2>&1 || { echo "go toolchain not found" >&2; exit 1; }

WORK="$(mktemp -d "${ETCD_BASELINE_TMP:-${TMPDIR:-/tmp}}/etcdbaseline.XXXXXX")"
PIDS=()
cleanup() {
	local rc=$?
	for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
	for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
	rm -rf "$WORK"
	exit "$rc"
}
trap cleanup EXIT INT TERM

fstype="$(stat -f -c %T "$WORK")"
if [ "$fstype" = "tmpfs" ] || [ "$fstype" = "ramfs" ]; then
	echo "WARNING: $WORK is on $fstype; fsync is a no-op, numbers will not be durable-write numbers" >&2
fi

echo "# $(etcd --version | head -1); data on $fstype ($WORK)" >&2

# Build the load generator first so compile time does not overlap the cluster.
(cd "$HERE" && go build -o "$WORK/etcdbaseline" .)

cluster=""
for i in 0 1 2; do
	cluster+="${cluster:+,}${NAMES[$i]}=http://${IPS[$i]}:2380"
done
endpoints=""
for i in 0 1 2; do
	ip="${IPS[$i]}"; name="${NAMES[$i]}"
	endpoints+="${endpoints:+,}http://$ip:2379"
	mkdir -p "$WORK/$name"
	etcd --name "$name" \
		--data-dir "$WORK/$name/data" \
		--listen-client-urls "http://$ip:2379" \
		--advertise-client-urls "http://$ip:2379" \
		--listen-peer-urls "http://$ip:2380" \
		--initial-advertise-peer-urls "http://$ip:2380" \
		--initial-cluster "$cluster" \
		--initial-cluster-token "etcdbaseline-$$" \
		--initial-cluster-state new \
		--log-level warn \
		>"$WORK/$name/etcd.log" 2>&1 &
	PIDS+=($!)
done

healthy=0
for _ in $(seq 1 60); do
	if ETCDCTL_API=3 etcdctl --endpoints "$endpoints" --dial-timeout 1s --command-timeout 2s \
		endpoint health >/dev/null 2>&1; then
		healthy=1; break
	fi
	for p in "${PIDS[@]}"; do
		kill -0 "$p" 2>/dev/null || { echo "etcd pid $p exited early" >&2; break 2; }
	done
	sleep 0.5
done
if [ "$healthy" -ne 1 ]; then
	echo "cluster did not become healthy; logs:" >&2
	for n in "${NAMES[@]}"; do echo "--- $n" >&2; tail -20 "$WORK/$n/etcd.log" >&2; done
	exit 1
fi
echo "# cluster healthy: $endpoints" >&2

"$WORK/etcdbaseline" -endpoints "$endpoints" -c 64 -d 10s -value-size 256 "$@"
