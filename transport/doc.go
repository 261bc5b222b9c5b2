// Package transport is a node's single network endpoint: one TCP listener
// shared by Raft and RPC, an RPC client with a session pool, optional TLS, and
// fault-injection hooks for tests.
//
// The first byte of every connection (inside TLS when TLS is on) selects the
// protocol: ProtoRaft hands the connection to hashicorp/raft through
// StreamLayer, ProtoRPC starts a yamux session on which every Call is its own
// stream. One port per node keeps firewall rules and node metadata small, and
// putting the byte inside TLS means nothing, not even the protocol, travels in
// the clear.
//
// RPC is msgpack over yamux streams: a stream per call gives concurrency
// without head-of-line blocking, and one session per remote address (re-dialed
// when it breaks) keeps the connection count at one per peer. A request carries
// the remaining time of the caller's deadline rather than an absolute time, so
// the nodes' clocks need not agree. A Call fails in one of two ways that callers
// must tell apart: a *RemoteError (the handler ran and said no, with a code that
// survives any number of hops) or a wrapped sentinel (ErrUnreachable: not
// delivered; ErrConnLost: maybe delivered). A pooled session found dead is
// re-dialed, and a Call retried once only when opening its stream failed,
// before any byte of the request left, so the transport never runs a call
// twice; anything else is left to the caller, who knows what is idempotent.
//
// yamux blocks opening a stream and writing to it until its send loop has
// written the frames, and ignores stream deadlines while doing so. A Call with
// a cancellable context therefore sends on a short-lived goroutine it can walk
// away from, so that the context bounds the whole call even on a stalled link.
//
// With TLS every connection is mutual: the server requires and verifies a
// client certificate before it reads the protocol byte, so a client without
// one gets no RPC or Raft service at all. TLS only proves "signed by the
// cluster CA"; which node a certificate names is the caller's business, and
// PeerCertificate hands it the certificate presented on the pooled RPC session
// to an address (the leader checks it before adding a member to Raft).
//
// Faults wrap every raw TCP connection (below TLS and yamux), so a Drop or
// Delay acts on raft streams and RPC sessions alike, on live connections, by
// remote host. The node exposes them on its debug endpoint for multi-process
// tests; they cost an atomic load per Read and Write when none is set.
//
// Outgoing connections are dialed from the bind IP when it is a specific
// address, so that nodes sharing a machine on 127.0.0.x see each other's own
// address (faults and logs key on it).
//
// Figures (BenchmarkCall: 32 goroutines making echo calls of a ~10-byte struct
// over one loopback session, client and server in one process; 2-vCPU AMD EPYC
// VM shared with other builds, go1.26, -benchtime 3s, three runs each):
// 10,000-13,300 calls/s plaintext with context.Background; 13,200-13,900
// calls/s with a deadline context (the send goroutine costs nothing
// measurable); 14,300-14,600 calls/s over TLS 1.3 (no slower: the cost is
// yamux's two write syscalls per frame and scheduling, not crypto). About 6.4
// KiB and 64-71 allocations per call, client and server together.
package transport
