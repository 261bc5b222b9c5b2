// Package predlog is a node's prediction log (DESIGN.md §8, "Monitoring"):
// the sampled requests this node's ingress answered, with their inputs,
// outputs and latency, and the ground-truth labels joined to them later. It
// lives in a Badger store of its own, beside the registry's, and never goes
// through Raft: each node keeps what it served, and readers fan out.
//
// Writing never holds up serving. Append encodes the record and puts it on
// a bounded queue; one goroutine drains the queue, waiting up to 5 ms for
// more, and writes what it took in one write batch. When the queue is full
// the record is dropped and counted (Dropped), as a sample rate below 1
// would have dropped it.
//
// Records are stored in blocks: the records of one deployment written
// together, sorted by time, at most 256 of them spanning at most a second,
// in one Badger entry. A Badger entry costs a skiplist insert, a log write
// and an iterator step however small it is, so blocks make logging a
// request cost one small entry (its ID's) instead of two, and reading a
// million records a few thousand steps instead of a million. A block's key
// holds its oldest record's time; a range read starts a second early and
// keeps each record by its own time.
//
// Keys (deployment names cannot hold a 0 byte):
//
//	p <deployment> 0 <unix nanos, 8 bytes BE> <seq, 4 bytes BE>  -> block
//	i <request id>                                             -> the block key's rest, and the record's place (2 bytes)
//	l <deployment> 0 <unix nanos> <seq> <place>                  -> label (float64s)
//	u <unix nanos received, 8 bytes BE> <request id>            -> pending label
//
// A block is its records one after the other, each its time after the
// block's (a uvarint) and its length, then the record. A record is binary,
// not msgpack, because a drift check decodes a million of them: version,
// latency and ID as varints and bytes, then each input and output tensor as
// its name, shape and raw little-endian float64s. Window decodes only the
// values, straight into columns.
//
// Retention: every entry carries Badger's TTL of Options.Retention, so old
// records vanish from reads at once and from disk at compaction. Size is
// bounded too: when the live blocks take more than Options.MaxBytes the
// oldest are deleted, across deployments by time, until they take under
// nine tenths of it.
//
// Labels: a label arrives by request ID on any node, which asks every node
// (Lookup). The node that logged the request stores it beside the record
// (l key: the block's key and the record's place), so reading the labelled
// records of a window is one range scan. A label no node matches is kept
// where it arrived (u key) for a grace period, and matched again by the
// node's sweeper: labels may come before the log is written or readable.
package predlog
