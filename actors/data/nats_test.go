package data

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/kilnml/kiln/raftfsm/structs"
)

// The NATS tests run an embedded nats-server with JetStream: the same
// server a deployment runs, in this process.

const (
	natsStream  = "ORDERS"
	natsDurable = "kiln-orders"
)

// testNATS is a server with one stream, ORDERS, on orders.>; the sources
// read orders.new.
type testNATS struct {
	url string
	js  jetstream.JetStream
	// last is the sequence of the last message published on orders.new.
	last uint64
}

// newTestNATS starts a server; a token, when given, is required of
// clients.
func newTestNATS(t *testing.T, token string) *testNATS {
	t.Helper()
	srv, err := server.NewServer(&server.Options{
		Host: "127.0.0.1", Port: -1, JetStream: true, StoreDir: t.TempDir(),
		NoLog: true, NoSigs: true, Authorization: token,
	})
	if err != nil {
		t.Fatalf("nats-server: %v", err)
	}
	srv.Start()
	t.Cleanup(func() {
		srv.Shutdown()
		srv.WaitForShutdown()
	})
	if !srv.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats-server not ready after 10s")
	}
	var opts []nats.Option
	if token != "" {
		opts = append(opts, nats.Token(token))
	}
	nc, err := nats.Connect(srv.ClientURL(), opts...)
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatalf("jetstream: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: natsStream, Subjects: []string{"orders.>"}}); err != nil {
		t.Fatalf("create stream: %v", err)
	}
	return &testNATS{url: srv.ClientURL(), js: js}
}

func (n *testNATS) source() *structs.NATSSource {
	return &structs.NATSSource{URL: n.url, Stream: natsStream, Subjects: []string{"orders.new"}, Durable: natsDurable}
}

// publish sends a message outside the source's subjects, the records with
// IDs in [from, to), and two malformed messages, and returns the malformed
// ones as the reader should report them.
func (n *testNATS) publish(t *testing.T, from, to int) []BadRecord {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	pub := func(subject, data string) uint64 {
		ack, err := n.js.Publish(ctx, subject, []byte(data))
		if err != nil {
			t.Fatalf("publish: %v", err)
		}
		return ack.Sequence
	}
	pub("orders.other", testRecordJSON(-1))
	for id := from; id < to; id++ {
		n.last = pub("orders.new", testRecordJSON(id))
	}
	var bad []BadRecord
	for _, raw := range []string{fmt.Sprintf("not json %d", from), "[1,2,3]"} {
		n.last = pub("orders.new", raw)
		bad = append(bad, BadRecord{Offset: fmt.Sprintf("seq %d", n.last), Raw: raw})
	}
	return bad
}

// end is the position after everything published on orders.new.
func (n *testNATS) end() Position {
	return Position{natsStream: strconv.FormatUint(n.last, 10)}
}

// acked reports whether the consumer has had every message up to seq
// acked and holds none unacked.
func (n *testNATS) acked(t *testing.T, seq uint64) bool {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cons, err := n.js.Consumer(ctx, natsStream, natsDurable)
	if err != nil {
		t.Fatalf("consumer: %v", err)
	}
	info, err := cons.Info(ctx)
	if err != nil {
		t.Fatalf("consumer info: %v", err)
	}
	return info.AckFloor.Stream == seq && info.NumAckPending == 0
}

func newTestNATSReader(t *testing.T, spec *structs.NATSSource, env Env) *natsReader {
	t.Helper()
	r, err := NewNATS("orders", spec, env)
	if err != nil {
		t.Fatalf("NewNATS: %v", err)
	}
	t.Cleanup(func() { r.Close() })
	return r.(*natsReader)
}

func TestNATS_ReadsEachRecordOnceAcrossReaders(t *testing.T) {
	tests := []struct {
		name     string
		maxBatch int
	}{
		{"one record a batch", 1},
		{"batches of seven", 7},
		{"batches larger than the stream", 1000},
		// The consumer's max ack pending must grow with the batch.
		{"batches over the server's default max ack pending", 1500},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			streamLeakCheck(t)
			n := newTestNATS(t, "")
			sink := &streamSink{}

			bad := n.publish(t, 0, 30)
			read := startStreamRead(t, newTestNATSReader(t, n.source(), Env{}), nil, tt.maxBatch, sink.emit)
			streamWaitFor(t, 20*time.Second, func() bool { return sink.len() == 32 && n.acked(t, n.last) })
			if err := read.stop(t); !errors.Is(err, context.Canceled) {
				t.Fatalf("Read after cancel = %v, want context.Canceled", err)
			}
			if got, want := sink.position(), n.end(); !maps.Equal(got, want) {
				t.Fatalf("position after the first reader = %v, want %v", got, want)
			}

			// A new reader, as after a failover, resumes from the
			// committed position and reads only what came since.
			bad = append(bad, n.publish(t, 30, 60)...)
			read = startStreamRead(t, newTestNATSReader(t, n.source(), Env{}), sink.position(), tt.maxBatch, sink.emit)
			streamWaitFor(t, 20*time.Second, func() bool { return sink.len() == 64 && n.acked(t, n.last) })
			if err := read.stop(t); !errors.Is(err, context.Canceled) {
				t.Fatalf("second Read after cancel = %v, want context.Canceled", err)
			}

			sink.checkBatches(t, tt.maxBatch)
			checkStreamIDs(t, sink.records(), 60)
			checkBadRecords(t, sink.bad(), bad)
			if got, want := sink.position(), n.end(); !maps.Equal(got, want) {
				t.Fatalf("position = %v, want %v", got, want)
			}
		})
	}
}

func TestNATS_FailedEmitIsReadAgain(t *testing.T) {
	errCommit := errors.New("raft: commit failed")
	tests := []struct {
		name string
		// committed says whether the failing emit committed the batch
		// before failing: the commit succeeded and the process died
		// before it could ack.
		committed bool
	}{
		{"emit fails before the commit", false},
		{"emit fails after the commit", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			streamLeakCheck(t)
			n := newTestNATS(t, "")
			sink := &streamSink{failAt: 3, failErr: errCommit, commitBeforeFail: tt.committed}

			bad := n.publish(t, 0, 30)
			read := startStreamRead(t, newTestNATSReader(t, n.source(), Env{}), nil, 5, sink.emit)
			if err := read.wait(t, 20*time.Second); !errors.Is(err, errCommit) {
				t.Fatalf("Read = %v, want the emit's error", err)
			}
			// The consumer has the acks of the two batches before the
			// failure, never of the failed one: it holds it pending.
			acked, _ := strconv.ParseUint(sink.positionAfter(2)[natsStream], 10, 64)
			ctx := context.Background()
			cons, err := n.js.Consumer(ctx, natsStream, natsDurable)
			if err != nil {
				t.Fatalf("consumer: %v", err)
			}
			info, err := cons.Info(ctx)
			if err != nil {
				t.Fatalf("consumer info: %v", err)
			}
			if info.AckFloor.Stream != acked || info.NumAckPending != 5 {
				t.Fatalf("consumer ack floor %d with %d pending, want %d with the failed batch's 5",
					info.AckFloor.Stream, info.NumAckPending, acked)
			}

			// The new reader must not wait for the pending batch's ack
			// wait (30s, longer than this test waits) to read it.
			bad = append(bad, n.publish(t, 30, 45)...)
			read = startStreamRead(t, newTestNATSReader(t, n.source(), Env{}), sink.position(), 5, sink.emit)
			streamWaitFor(t, 20*time.Second, func() bool { return sink.len() == 49 && n.acked(t, n.last) })
			if err := read.stop(t); !errors.Is(err, context.Canceled) {
				t.Fatalf("second Read after cancel = %v, want context.Canceled", err)
			}
			sink.checkBatches(t, 5)
			checkStreamIDs(t, sink.records(), 45)
			checkBadRecords(t, sink.bad(), bad)
		})
	}
}

func TestNATS_SkipsRedeliveriesOfCommittedMessages(t *testing.T) {
	tests := []struct {
		name string
		// lost says whether the ack of a delivery is lost.
		lost func(md *jetstream.MsgMetadata) bool
	}{
		{"the first batch's acks are lost", func(md *jetstream.MsgMetadata) bool {
			return md.NumDelivered == 1 && md.Sequence.Stream <= 6
		}},
		{"every first ack is lost", func(md *jetstream.MsgMetadata) bool {
			return md.NumDelivered == 1
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			streamLeakCheck(t)
			n := newTestNATS(t, "")
			r := newTestNATSReader(t, n.source(), Env{})
			// The server redelivers what has no ack after this long.
			r.ackWait = 100 * time.Millisecond
			var mu sync.Mutex
			lost, redelivered := 0, 0
			r.ack = func(m jetstream.Msg) error {
				md, err := m.Metadata()
				if err != nil {
					return err
				}
				mu.Lock()
				defer mu.Unlock()
				if tt.lost(md) {
					lost++
					return nil
				}
				if md.NumDelivered > 1 {
					redelivered++
				}
				return m.Ack()
			}
			counts := func() (int, int) {
				mu.Lock()
				defer mu.Unlock()
				return lost, redelivered
			}

			sink := &streamSink{}
			bad := n.publish(t, 0, 20)
			read := startStreamRead(t, r, nil, 5, sink.emit)
			streamWaitFor(t, 20*time.Second, func() bool {
				lost, redelivered := counts()
				return sink.len() == 22 && lost > 0 && redelivered >= lost && n.acked(t, n.last)
			})
			if err := read.stop(t); !errors.Is(err, context.Canceled) {
				t.Fatalf("Read after cancel = %v, want context.Canceled", err)
			}
			checkStreamIDs(t, sink.records(), 20)
			checkBadRecords(t, sink.bad(), bad)
		})
	}
}

func TestNATS_StopsWhenAnotherReaderTakesDeliveries(t *testing.T) {
	streamLeakCheck(t)
	n := newTestNATS(t, "")
	bad := n.publish(t, 0, 20)

	// While the reader commits its first batch, another reader of the
	// same durable (a node that has not noticed it lost the source)
	// takes the next message and never acks it.
	taken := make(chan struct{})
	sink := &streamSink{before: func(ctx context.Context, call int) {
		if call == 1 {
			select {
			case <-taken:
			case <-ctx.Done():
			}
		}
	}}
	read := startStreamRead(t, newTestNATSReader(t, n.source(), Env{}), nil, 5, sink.emit)
	streamWaitFor(t, 20*time.Second, func() bool { return sink.callCount() == 1 })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	other, err := n.js.Consumer(ctx, natsStream, natsDurable)
	if err != nil {
		t.Fatalf("consumer: %v", err)
	}
	b, err := other.Fetch(1, jetstream.FetchContext(ctx))
	if err != nil {
		t.Fatalf("fetch: %v", err)
	}
	for range b.Messages() {
	}
	if err := b.Error(); err != nil {
		t.Fatalf("fetch: %v", err)
	}
	close(taken)

	err = read.wait(t, 20*time.Second)
	if !errors.Is(err, ErrDeliveryGap) || !strings.Contains(err.Error(), "another reader took deliveries") {
		t.Fatalf("Read = %v, want the error of a delivery gap", err)
	}
	// Had the reader gone on, the taken message would come back after
	// its ack wait, below the position, and be dropped. A new reader
	// reads it now.
	read = startStreamRead(t, newTestNATSReader(t, n.source(), Env{}), sink.position(), 5, sink.emit)
	streamWaitFor(t, 20*time.Second, func() bool { return sink.len() == 22 })
	read.stop(t)
	checkStreamIDs(t, sink.records(), 20)
	checkBadRecords(t, sink.bad(), bad)
}

func TestNATS_Token(t *testing.T) {
	const token = "s3cret-token"
	streamLeakCheck(t)
	n := newTestNATS(t, token)
	n.publish(t, 0, 3)
	tokenFile := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(tokenFile, []byte(token+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	env := func(value string) Env {
		return Env{Getenv: func(name string) string {
			if name == "NATS_TOKEN" {
				return value
			}
			return ""
		}}
	}
	tests := []struct {
		name  string
		token structs.Secret
		env   Env
		// check judges what NewNATS and then Read returned.
		check func(t *testing.T, newErr, readErr error, sink *streamSink)
	}{
		{"a token missing on the node is ErrSecret", structs.Secret{Env: "NATS_TOKEN"}, env(""),
			func(t *testing.T, newErr, _ error, _ *streamSink) {
				if !errors.Is(newErr, ErrSecret) {
					t.Fatalf("NewNATS = %v, want ErrSecret", newErr)
				}
			}},
		{"no token is an authorization error", structs.Secret{}, env(""),
			func(t *testing.T, _, readErr error, _ *streamSink) {
				if !errors.Is(readErr, ErrAuth) || !errors.Is(readErr, nats.ErrAuthorization) || !strings.Contains(readErr.Error(), n.url) {
					t.Fatalf("Read = %v, want ErrAuth, an authorization error naming %s", readErr, n.url)
				}
			}},
		{"a wrong token is an authorization error", structs.Secret{Env: "NATS_TOKEN"}, env("wrong-token"),
			func(t *testing.T, _, readErr error, _ *streamSink) {
				if !errors.Is(readErr, ErrAuth) || !errors.Is(readErr, nats.ErrAuthorization) || !strings.Contains(readErr.Error(), n.url) {
					t.Fatalf("Read = %v, want ErrAuth, an authorization error naming %s", readErr, n.url)
				}
				if strings.Contains(readErr.Error(), "wrong-token") {
					t.Fatalf("Read error %q shows the token", readErr)
				}
			}},
		{"the token from a variable reads", structs.Secret{Env: "NATS_TOKEN"}, env(token),
			func(t *testing.T, _, readErr error, sink *streamSink) {
				if !errors.Is(readErr, context.Canceled) || sink.len() != 5 {
					t.Fatalf("Read = %v after %d records, want context.Canceled after 5", readErr, sink.len())
				}
			}},
		{"the token from a file reads", structs.Secret{File: tokenFile}, Env{},
			func(t *testing.T, _, readErr error, sink *streamSink) {
				if !errors.Is(readErr, context.Canceled) || sink.len() != 5 {
					t.Fatalf("Read = %v after %d records, want context.Canceled after 5", readErr, sink.len())
				}
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			spec := n.source()
			spec.Token = tt.token
			r, newErr := NewNATS("orders", spec, tt.env)
			if newErr != nil {
				tt.check(t, newErr, nil, nil)
				return
			}
			t.Cleanup(func() { r.Close() })
			sink := &streamSink{}
			// Each reader resets the durable to the start of the stream.
			read := startStreamRead(t, r, nil, 10, sink.emit)
			streamWaitFor(t, 20*time.Second, func() bool { return read.finished() || sink.len() == 5 })
			tt.check(t, nil, read.stop(t), sink)
		})
	}
}

func TestNATS_Errors(t *testing.T) {
	streamLeakCheck(t)
	n := newTestNATS(t, "")
	tests := []struct {
		name string
		spec func() *structs.NATSSource
		from Position
		want []string // parts of the error text
		hide string   // what the error text must not hold
	}{
		{"a bad position", n.source, Position{natsStream: "ten"}, []string{"nats position", natsStream}, ""},
		{"a missing stream", func() *structs.NATSSource {
			s := n.source()
			s.Stream = "MISSING"
			return s
		}, nil, []string{n.url, "stream MISSING"}, ""},
		{"an unreachable server", func() *structs.NATSSource {
			s := n.source()
			s.URL = "nats://someone:hunter2@127.0.0.1:1"
			return s
		}, nil, []string{"nats://127.0.0.1:1"}, "hunter2"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := newTestNATSReader(t, tt.spec(), Env{})
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			err := r.Read(ctx, tt.from, 10, (&streamSink{}).emit)
			if err == nil {
				t.Fatal("Read succeeded, want an error")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("Read error %q does not say %q", err, w)
				}
			}
			if tt.hide != "" && strings.Contains(err.Error(), tt.hide) {
				t.Errorf("Read error %q shows %q", err, tt.hide)
			}
		})
	}
	t.Run("Close ends a Read", func(t *testing.T) {
		n.publish(t, 0, 3)
		r := newTestNATSReader(t, n.source(), Env{})
		sink := &streamSink{}
		read := startStreamRead(t, r, nil, 10, sink.emit)
		streamWaitFor(t, 20*time.Second, func() bool { return sink.len() > 0 })
		r.Close()
		if err := read.wait(t, 20*time.Second); err == nil || errors.Is(err, context.Canceled) {
			t.Fatalf("Read after Close = %v, want an error", err)
		}
	})
}
