package data

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/hashicorp/go-hclog"

	"github.com/kilnml/kiln/ml/dataset"
	"github.com/kilnml/kiln/raftfsm/structs"
)

// Record is one record read from a source: column name to value. Values are
// nil, bool, int64, float64, string or time.Time; a reader that cannot tell
// an integer from a float (JSON) gives int64 for integral numbers. Columns
// are converted to the source's schema after reading, not by the reader.
type Record map[string]any

// Position says how far a source has been read. Its keys are what the kind
// tracks, and its values text only the reader parses:
//
//   - postgres: "" is the incremental column's last value read.
//   - http with cursor pagination: "" is the cursor that fetched the page
//     being read ("" for the first page), and "skip" the number of that
//     page's records, good and bad, already handed over.
//   - file: each file's path maps to "<sha256>" once the file is read
//     whole, or "<sha256>@<n>" while its first n records, good and bad,
//     are.
//   - kafka: "<topic>/<partition>" is the offset of the next record.
//   - nats: the stream's name is the last stream sequence read.
//
// The registry stores a source's position and compares it on every commit,
// so two actors of one source can never both advance it.
type Position map[string]string

// BadRecord is a record a reader could not decode. It goes to the run's
// quarantine with its offset; it never stops the read.
type BadRecord struct {
	// Offset says where in the source: "line 12 of /data/a.csv",
	// "orders/0@1234", "seq 88".
	Offset string
	Reason string
	// Raw is the record's text, cut to MaxRawBytes.
	Raw string
}

// MaxRawBytes bounds the raw text kept for a bad record.
const MaxRawBytes = 1024

// Batch is what a reader hands over at once: records in source order, the
// bad ones among them, and the position after the last of them.
type Batch struct {
	Records []Record
	Bad     []BadRecord
	// Advance holds the keys of the position this batch moves, with their
	// values after it. Keys it leaves out keep their values.
	Advance Position
}

// Len is the number of records read, good and bad.
func (b *Batch) Len() int { return len(b.Records) + len(b.Bad) }

// Emit hands a batch to the ingestion actor. A batch may hold no records
// and only move the position (an empty file, an empty page). It returns
// nil only once the
// batch and its position are committed to the registry; a reader
// acknowledges to the source (a Kafka offset commit, a NATS ack) after
// that, never before. An error means nothing of the batch was committed,
// or that whether it was is unknown: the reader stops and returns it, and
// the next read starts again from the registry's position.
type Emit func(ctx context.Context, b Batch) error

// Reader reads one source.
type Reader interface {
	// Read hands the records after from to emit, in order, in batches of at
	// most maxBatch records (good and bad); the one exception is a run of
	// rows of PostgreSQL sharing one incremental value, which goes whole in
	// one batch, since the position cannot fall inside it. A reader of a run (postgres,
	// http, file) returns nil once it has read everything there is now; a
	// stream (kafka, nats) reads until ctx ends and returns ctx.Err(). Any
	// failure to reach or read the source is returned as an error that
	// names the source's address (never a credential).
	Read(ctx context.Context, from Position, maxBatch int, emit Emit) error
	// Close releases connections. Read is not called after it.
	Close() error
}

// Errors of this package.
var (
	// ErrSecret is returned when a credential's file or variable is
	// missing or empty.
	ErrSecret = errors.New("data: credential not found")

	// ErrAuth is returned when a source refuses the credentials it was
	// given: PostgreSQL's authentication failed (SQLSTATE 28P01, 28000),
	// an HTTP 401 or 403, a NATS authorization violation. Retrying does
	// not help until the operator fixes the credential.
	ErrAuth = errors.New("data: source refused the credentials")

	// ErrDeliveryGap is returned by a NATS reader whose consumer skipped
	// a delivery: another reader of the durable consumer took it, or a
	// fetch reply was lost. The message is pending where the reader cannot
	// see it; the next Read resets the consumer to the position and reads
	// it.
	ErrDeliveryGap = errors.New("data: a delivery of the consumer went elsewhere")
)

// Env is what a reader may take from the node it runs on.
type Env struct {
	// Getenv reads the agent's environment; nil means os.Getenv.
	Getenv func(string) string
	// ReadFile reads a local file; nil means os.ReadFile.
	ReadFile func(string) ([]byte, error)
	// Logger is where readers that run on (kafka, nats) log what they do
	// not return as an error, each under a name of its own; nil means
	// hclog.NewNullLogger().
	Logger hclog.Logger
	// Datasets lists the versions of a dataset after a version number,
	// in order, each fetched to a local file (dataset sources); nil: this
	// node reads none.
	Datasets func(ctx context.Context, name string, after uint64) ([]DatasetFile, error)
}

// DatasetFile is one version of a dataset, on local disk.
type DatasetFile struct {
	Version  uint64
	Path     string
	Format   string
	Size     int64
	NoHeader bool
	Columns  []dataset.Column
	// Failed lists the batch expectations its source's run failed: such a
	// version is skipped.
	Failed []string
}

// logger is the Logger, or a null one when none is set.
func (e Env) logger() hclog.Logger {
	if e.Logger == nil {
		return hclog.NewNullLogger()
	}
	return e.Logger
}

// Resolve reads a secret on this node: the file's contents or the
// variable's value, without a trailing newline. An unset Secret resolves to
// "". A named file or variable that is missing or empty is ErrSecret, with
// field and the name in the message.
func (e Env) Resolve(field string, s structs.Secret) (string, error) {
	switch {
	case s.File != "":
		read := e.ReadFile
		if read == nil {
			read = os.ReadFile
		}
		b, err := read(s.File)
		if err != nil {
			return "", fmt.Errorf("%w: %s.file %s: %v", ErrSecret, field, s.File, err)
		}
		v := strings.TrimRight(string(b), "\r\n")
		if v == "" {
			return "", fmt.Errorf("%w: %s.file %s is empty", ErrSecret, field, s.File)
		}
		return v, nil
	case s.Env != "":
		get := e.Getenv
		if get == nil {
			get = os.Getenv
		}
		v := get(s.Env)
		if v == "" {
			return "", fmt.Errorf("%w: %s.env %s is not set on this node", ErrSecret, field, s.Env)
		}
		return v, nil
	}
	return "", nil
}

// CutRaw bounds a bad record's raw text to MaxRawBytes.
func CutRaw(s string) string {
	if len(s) <= MaxRawBytes {
		return s
	}
	cut := MaxRawBytes
	for cut > 0 && !utf8Start(s[cut]) {
		cut--
	}
	return s[:cut]
}

func utf8Start(b byte) bool { return b&0xC0 != 0x80 }

// unitEmit is the Emit of a reader whose units of the source (a file, an
// HTTP page) may take several batches. The batcher hands over a full batch
// without a position; unitEmit gives it mid(n), n being the records of the
// unit, good and bad, handed over with that batch and before it, so that a
// read stopped between two batches of a unit resumes after the last one
// committed instead of reading the unit again. A batch that carries a
// position (the one that ends a unit) is passed on as it is.
type unitEmit struct {
	emit Emit
	// mid is the position inside the current unit after its first n
	// records; nil for a unit read whole every time.
	mid func(n int) Position
	// handed counts the records of the current unit handed over: those an
	// earlier read committed, then those of this read's committed batches.
	handed int
}

// begin starts a unit whose first handed records an earlier read
// committed.
func (u *unitEmit) begin(handed int, mid func(n int) Position) {
	u.handed, u.mid = handed, mid
}

// Emit hands b to the reader's Emit, with a position inside the unit when
// it carries none.
func (u *unitEmit) Emit(ctx context.Context, b Batch) error {
	if b.Advance == nil && u.mid != nil {
		b.Advance = u.mid(u.handed + b.Len())
	}
	if err := u.emit(ctx, b); err != nil {
		return err
	}
	u.handed += b.Len()
	return nil
}
