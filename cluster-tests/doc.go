// Package clustertest runs real multi-process Kiln clusters on one machine and
// checks what an operator and a client can observe:
//
//   - formation, seen through the CLI (members, list-peers, nodes, status), and
//     retry_join that keeps trying peers when a node starts first;
//   - replication of writes made on any node (?index=, consistent reads, the
//     X-Kiln-* headers);
//   - kill -9 of the leader (failover time is logged) and restart on the same
//     data dir; kill -9 of every node after log compaction;
//   - catch-up of a new node by snapshot install; non-voters beyond max_voters;
//   - graceful leave (SIGTERM) of a follower and of the leader; reaping of a
//     dead node after dead_node_reap, and its return;
//   - a partition made with the transport fault endpoint (the isolated leader
//     refuses writes, the majority elects a leader and goes on, the heal
//     catches up and drops the minority's uncommitted write);
//   - snapshot save/restore through the CLI;
//   - mutual TLS on the Raft/RPC port (a cluster forms and forwards writes over
//     it; a client without a certificate is refused);
//   - linearizability of tag writes and consistent reads on all nodes while the
//     leader is killed and restarted, checked with porcupine;
//   - config errors that name the file, line and key;
//   - a model file's copies restored after a holder dies.
//
// Benchmarks measure failover time (BenchmarkFailover) and the idle memory of
// one agent (BenchmarkIdleRSS).
//
// The subpackage testutil holds what every package's tests share: the
// goroutine leak check run from TestMain and polling for a condition. It
// lives here, with the rest of the test machinery, so that the repository's
// top level stays as DESIGN.md §1 fixes it.
//
// The package has no non-test code: TestMain builds `kiln` once from ./cmd/kiln
// into a temporary directory, and every test starts `kiln agent` processes from
// it, each with its own config files, data dir and log file under t.TempDir().
// A test's processes are killed in t.Cleanup whatever its outcome, and on Linux
// the kernel kills them if the test binary dies first. When a test fails, the
// tail of every node's log is printed. A node that exits without the test
// asking (a crash, or a kill from outside) fails the test. TestMain fails the
// run if a process or a harness goroutine outlives the tests.
//
// Each node gets a loopback IP of its own and the default ports (HTTP 7070,
// RPC+Raft 7071, gossip 7072), so Linux is required (macOS would need lo0
// aliases). IPs are handed out from 127.0.0.60 to 127.0.0.250, wrapping around,
// skipping any IP whose ports are taken. That avoids 127.0.0.1, the example
// configs (127.0.0.11-13), the etcd baseline (127.0.0.21-23) and the node unit
// tests (127.0.1.x). Anything that runs `pkill -f "kiln agent"` on the same
// machine kills these clusters too.
//
// Tests run one at a time (no t.Parallel): a 3-node cluster keeps a 2-core
// machine busy enough.
//
//	go test ./cluster-tests/                      # all tests, about 1.5-2 minutes
//	go test -short ./cluster-tests/               # skips the slowest ones
//	go test -run TestCluster_Partition -count 3 ./cluster-tests/
//	go test -run '^$' -bench . -benchtime 3x ./cluster-tests/
//
// The nested module etcdbaseline/ is separate: a baseline for the write
// benchmark, not part of this package.
package clustertest
