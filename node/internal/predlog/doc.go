// Package predlog is a node's prediction log (DESIGN.md §8, "Monitoring"):
// the sampled requests this node's ingress answered, with their inputs,
// outputs and latency, and the ground-truth labels joined to them later. It
// lives in a Badger store of its own, beside the registry's, and never goes
// through Raft: each node keeps what it served, and readers fan out.
//
// Writing never holds up serving. Append copies the record onto a bounded
// queue and returns; one goroutine drains the queue in write batches. When
// the queue is full the record is dropped and counted (Dropped), as a
// sample rate below 1 would have dropped it.
//
// Keys (deployment names cannot hold a 0 byte):
//
//	p <deployment> 0 <unix nanos, 8 bytes BE> <seq, 4 bytes BE>  -> record
//	i <request id>                                             -> the p key's suffix
//	l <deployment> 0 <unix nanos> <seq>                          -> label (float64s)
//	u <unix nanos received, 8 bytes BE> <request id>            -> pending label
//
// A record's value is binary, not msgpack, because a drift check decodes a
// million of them: version, latency and ID as varints and bytes, then each
// input and output tensor as its name, shape and raw little-endian float64s.
// WindowColumns decodes only the values, straight into columns.
//
// Retention: every entry carries Badger's TTL of Options.Retention, so old
// records vanish from reads at once and from disk at compaction. Size is
// bounded too: when the store grows past Options.MaxBytes the oldest records
// are deleted, across deployments by time, until it is under nine tenths of
// it.
//
// Labels: a label arrives by request ID on any node, which asks every node
// (Lookup). The node that logged the request stores it beside the record
// (l key, same suffix), so reading the labelled records of a window is one
// range scan. A label no node matches is kept where it arrived (u key) for
// a grace period, and matched again by the node's sweeper: labels may come
// before the log is written or readable.
package predlog
