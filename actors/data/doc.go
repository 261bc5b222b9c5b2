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
package data
