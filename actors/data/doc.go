// Package data runs sources: one ingestion actor per source reads records
// (from PostgreSQL, an HTTP API, files, Kafka, NATS JetStream, or an HTTP
// push), checks them against the source's expectations, and commits them
// through Raft together with the source's position, so that a restart or a
// failover neither loses nor repeats a record.
//
// A Reader knows one kind of source and nothing of the cluster: it hands
// batches to an Emit that returns only once the batch is committed, and it
// acknowledges to the source after that. Everything between the reader and
// the registry (conversion to the schema, expectations, feature rows) is
// the actor's.
//
// Most kinds resume exactly where the last committed batch left off: a
// query after its incremental column's last value, a file after its
// records committed so far, an HTTP cursor feed after the records of its
// page handed over, Kafka and NATS after their offset or sequence. Two
// kinds cannot: an HTTP source without pagination, or with page
// pagination, is a snapshot API, read whole at every run (page numbers say
// nothing of what is new), and a file changed after part of it was read is
// read again whole. Their records come again run after run; the registry
// stores the rows of such sources deduplicated, an identical row of one
// entity and timestamp once.
package data
