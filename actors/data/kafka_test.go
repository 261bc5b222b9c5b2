package data

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
	"go.uber.org/goleak"

	"github.com/kilnml/kiln/raftfsm/structs"
)

// The Kafka tests run against kfake, franz-go's in-process cluster. It
// speaks the real Kafka wire protocol (produce, fetch, consumer groups,
// offset commits), so the reader runs its real client against it, but it
// is not a full broker: no replication, no disk, and its group coordinator
// is its own implementation of the protocol, not Kafka's.

const kafkaTopic = "orders"

// testKafka is a kfake cluster with one topic of three partitions.
type testKafka struct {
	cluster *kfake.Cluster
	addrs   []string
	client  *kgo.Client // produces
	admin   *kadm.Client
	// produced counts the records produced to each partition, which is
	// the next offset of each, since kfake starts partitions at 0.
	produced [3]int64
}

func newTestKafka(t *testing.T) *testKafka {
	t.Helper()
	cluster, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(3, kafkaTopic))
	if err != nil {
		t.Fatalf("kfake: %v", err)
	}
	t.Cleanup(cluster.Close)
	addrs := cluster.ListenAddrs()
	cl, err := kgo.NewClient(kgo.SeedBrokers(addrs...), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err != nil {
		t.Fatalf("kafka admin client: %v", err)
	}
	t.Cleanup(cl.Close)
	return &testKafka{cluster: cluster, addrs: addrs, client: cl, admin: kadm.NewClient(cl)}
}

// source is the normalized spec of a source reading the topic.
func (k *testKafka) source(group string) *structs.KafkaSource {
	return &structs.KafkaSource{Brokers: k.addrs, Topics: []string{kafkaTopic}, Group: group, StartOffset: "earliest"}
}

// produce writes the records with IDs in [from, to) round robin over the
// partitions, then one malformed value to each partition, and returns the
// malformed ones as the reader should report them.
func (k *testKafka) produce(t *testing.T, from, to int) []BadRecord {
	t.Helper()
	var recs []*kgo.Record
	for id := from; id < to; id++ {
		recs = append(recs, &kgo.Record{Topic: kafkaTopic, Partition: int32(id % 3), Value: []byte(testRecordJSON(id))})
	}
	var bad []BadRecord
	for p := range int32(3) {
		raw := fmt.Sprintf("not json %d/%d", from, p)
		recs = append(recs, &kgo.Record{Topic: kafkaTopic, Partition: p, Value: []byte(raw)})
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := k.client.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		t.Fatalf("produce: %v", err)
	}
	for _, rec := range recs {
		if !strings.HasPrefix(string(rec.Value), "not json") {
			continue
		}
		bad = append(bad, BadRecord{Offset: fmt.Sprintf("%s/%d@%d", kafkaTopic, rec.Partition, rec.Offset), Raw: string(rec.Value)})
	}
	for _, rec := range recs {
		k.produced[rec.Partition] = max(k.produced[rec.Partition], rec.Offset+1)
	}
	return bad
}

// end is the position after everything produced.
func (k *testKafka) end() Position {
	pos := make(Position)
	for p, next := range k.produced {
		pos[fmt.Sprintf("%s/%d", kafkaTopic, p)] = strconv.FormatInt(next, 10)
	}
	return pos
}

// groupPosition is the group's committed offsets as a Position.
func (k *testKafka) groupPosition(t *testing.T, group string) Position {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	offsets, err := k.admin.FetchOffsets(ctx, group)
	if err != nil {
		t.Fatalf("fetch group offsets: %v", err)
	}
	pos := make(Position)
	offsets.Each(func(o kadm.OffsetResponse) {
		if o.Err == nil && o.At >= 0 {
			pos[fmt.Sprintf("%s/%d", o.Topic, o.Partition)] = strconv.FormatInt(o.At, 10)
		}
	})
	return pos
}

func newTestKafkaReader(t *testing.T, spec *structs.KafkaSource) Reader {
	t.Helper()
	r, err := NewKafka("orders", spec, Env{})
	if err != nil {
		t.Fatalf("NewKafka: %v", err)
	}
	t.Cleanup(func() { r.Close() })
	return r
}

func TestKafka_ReadsEachRecordOnceAcrossReaders(t *testing.T) {
	tests := []struct {
		name     string
		maxBatch int
	}{
		{"one record a batch", 1},
		{"batches of seven", 7},
		{"batches larger than the topic", 1000},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			streamLeakCheck(t)
			k := newTestKafka(t)
			sink := &streamSink{}
			const group = "kiln-orders"

			bad := k.produce(t, 0, 30)
			read := startStreamRead(t, newTestKafkaReader(t, k.source(group)), nil, tt.maxBatch, sink.emit)
			streamWaitFor(t, 20*time.Second, func() bool { return sink.len() == 33 })
			if err := read.stop(t); !errors.Is(err, context.Canceled) {
				t.Fatalf("Read after cancel = %v, want context.Canceled", err)
			}
			if got, want := sink.position(), k.end(); !maps.Equal(got, want) {
				t.Fatalf("position after the first reader = %v, want %v", got, want)
			}

			// A new reader, as after a failover, resumes from the
			// committed position and reads only what came since.
			bad = append(bad, k.produce(t, 30, 60)...)
			read = startStreamRead(t, newTestKafkaReader(t, k.source(group)), sink.position(), tt.maxBatch, sink.emit)
			streamWaitFor(t, 20*time.Second, func() bool { return sink.len() == 66 })
			if err := read.stop(t); !errors.Is(err, context.Canceled) {
				t.Fatalf("second Read after cancel = %v, want context.Canceled", err)
			}

			sink.checkBatches(t, tt.maxBatch)
			checkStreamIDs(t, sink.records(), 60)
			checkBadRecords(t, sink.bad(), bad)
			if got, want := sink.position(), k.end(); !maps.Equal(got, want) {
				t.Fatalf("position = %v, want %v", got, want)
			}
			if got, want := k.groupPosition(t, group), k.end(); !maps.Equal(got, want) {
				t.Fatalf("group offsets = %v, want the position %v", got, want)
			}
		})
	}
}

func TestKafka_FailedEmitIsReadAgain(t *testing.T) {
	errCommit := errors.New("raft: commit failed")
	tests := []struct {
		name string
		// committed says whether the failing emit committed the batch
		// before failing (the registry has it, the answer was lost).
		committed bool
	}{
		{"emit fails before the commit", false},
		{"emit fails after the commit", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			streamLeakCheck(t)
			k := newTestKafka(t)
			const group = "kiln-orders"
			sink := &streamSink{failAt: 3, failErr: errCommit, commitBeforeFail: tt.committed}

			bad := k.produce(t, 0, 30)
			read := startStreamRead(t, newTestKafkaReader(t, k.source(group)), nil, 5, sink.emit)
			if err := read.wait(t, 20*time.Second); !errors.Is(err, errCommit) {
				t.Fatalf("Read = %v, want the emit's error", err)
			}
			// The group has the two batches acknowledged before the
			// failure, never the failed one.
			acked := sink.positionAfter(2)
			if got := k.groupPosition(t, group); !maps.Equal(got, acked) {
				t.Fatalf("group offsets after the failure = %v, want %v", got, acked)
			}

			bad = append(bad, k.produce(t, 30, 45)...)
			read = startStreamRead(t, newTestKafkaReader(t, k.source(group)), sink.position(), 5, sink.emit)
			streamWaitFor(t, 20*time.Second, func() bool { return sink.len() == 51 })
			if err := read.stop(t); !errors.Is(err, context.Canceled) {
				t.Fatalf("second Read after cancel = %v, want context.Canceled", err)
			}
			sink.checkBatches(t, 5)
			checkStreamIDs(t, sink.records(), 45)
			checkBadRecords(t, sink.bad(), bad)
			if got, want := k.groupPosition(t, group), k.end(); !maps.Equal(got, want) {
				t.Fatalf("group offsets = %v, want the position %v", got, want)
			}
		})
	}
}

func TestKafka_RebalanceResumesFromThePosition(t *testing.T) {
	streamLeakCheck(t)
	k := newTestKafka(t)
	const group = "kiln-orders"
	sink := &streamSink{}
	k.produce(t, 0, 30)
	read := startStreamRead(t, newTestKafkaReader(t, k.source(group)), nil, 7, sink.emit)
	streamWaitFor(t, 20*time.Second, func() bool { return sink.len() == 33 })

	// Another member joins the group and takes partitions away from the
	// reader. It commits the end of its partitions to the group, as a
	// member that read them without committing them to the registry
	// would, and leaves, handing them back.
	var mu sync.Mutex
	var taken []int32
	other, err := kgo.NewClient(
		kgo.SeedBrokers(k.addrs...),
		kgo.ConsumerGroup(group),
		kgo.ConsumeTopics(kafkaTopic),
		kgo.DisableAutoCommit(),
		kgo.OnPartitionsAssigned(func(_ context.Context, _ *kgo.Client, assigned map[string][]int32) {
			mu.Lock()
			defer mu.Unlock()
			taken = append(taken, assigned[kafkaTopic]...)
		}),
	)
	if err != nil {
		t.Fatalf("second member: %v", err)
	}
	defer other.Close()
	streamWaitFor(t, 20*time.Second, func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(taken) > 0
	})
	k.produce(t, 30, 60)
	ends := make(map[string]map[int32]kgo.EpochOffset)
	mu.Lock()
	for _, p := range taken {
		if ends[kafkaTopic] == nil {
			ends[kafkaTopic] = make(map[int32]kgo.EpochOffset)
		}
		ends[kafkaTopic][p] = kgo.EpochOffset{Epoch: -1, Offset: k.produced[p]}
	}
	mu.Unlock()
	var commitErr error
	other.CommitOffsetsSync(context.Background(), ends, func(_ *kgo.Client, _ *kmsg.OffsetCommitRequest, resp *kmsg.OffsetCommitResponse, err error) {
		commitErr = err
		for _, rt := range resp.Topics {
			for _, rp := range rt.Partitions {
				if err := kerr.ErrorForCode(rp.ErrorCode); err != nil && commitErr == nil {
					commitErr = err
				}
			}
		}
	})
	if commitErr != nil {
		t.Fatalf("second member's commit: %v", commitErr)
	}
	other.Close()

	streamWaitFor(t, 20*time.Second, func() bool { return sink.len() == 66 })
	if err := read.stop(t); !errors.Is(err, context.Canceled) {
		t.Fatalf("Read after cancel = %v, want context.Canceled", err)
	}
	checkStreamIDs(t, sink.records(), 60)
	if got, want := sink.position(), k.end(); !maps.Equal(got, want) {
		t.Fatalf("position = %v, want %v", got, want)
	}
}

func TestKafka_PositionOverridesGroupOffsets(t *testing.T) {
	tests := []struct {
		name string
		// from is the position the reader starts from; the group's
		// offsets are all at the end of the partitions.
		from   func(k *testKafka) Position
		wantID []int
	}{
		{"no position reads from the start", func(*testKafka) Position { return nil }, []int{0, 1, 2, 3, 4, 5}},
		{"a position resumes there", func(*testKafka) Position {
			return Position{kafkaTopic + "/0": "1", kafkaTopic + "/1": "2", kafkaTopic + "/2": "2"}
		}, []int{3}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			streamLeakCheck(t)
			k := newTestKafka(t)
			const group = "kiln-orders"
			k.produce(t, 0, 6)
			// As if an earlier source of the same name had read it all.
			ends := make(kadm.Offsets)
			for p, next := range k.produced {
				ends.Add(kadm.Offset{Topic: kafkaTopic, Partition: int32(p), At: next, LeaderEpoch: -1})
			}
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			if _, err := k.admin.CommitOffsets(ctx, group, ends); err != nil {
				t.Fatalf("commit group offsets: %v", err)
			}

			sink := &streamSink{}
			read := startStreamRead(t, newTestKafkaReader(t, k.source(group)), tt.from(k), 100, sink.emit)
			// Every partition's malformed record is after its good ones.
			streamWaitFor(t, 20*time.Second, func() bool { return len(sink.bad()) == 3 })
			read.stop(t)
			var got []int
			for _, rec := range sink.records() {
				got = append(got, int(rec["id"].(int64)))
			}
			if !sameIDs(got, tt.wantID) {
				t.Fatalf("read IDs %v, want %v", got, tt.wantID)
			}
		})
	}
}

func TestKafka_Errors(t *testing.T) {
	t.Run("Close ends a Read with an error naming the brokers", func(t *testing.T) {
		streamLeakCheck(t)
		k := newTestKafka(t)
		r := newTestKafkaReader(t, k.source("kiln-orders"))
		sink := &streamSink{}
		k.produce(t, 0, 3)
		read := startStreamRead(t, r, nil, 10, sink.emit)
		streamWaitFor(t, 20*time.Second, func() bool { return sink.len() == 6 })
		r.Close()
		err := read.wait(t, 20*time.Second)
		if err == nil || !strings.Contains(err.Error(), k.addrs[0]) {
			t.Fatalf("Read after Close = %v, want an error naming %s", err, k.addrs[0])
		}
	})
	t.Run("a bad position is refused", func(t *testing.T) {
		k := newTestKafka(t)
		r := newTestKafkaReader(t, k.source("kiln-orders"))
		for _, from := range []Position{{"orders": "1"}, {"orders/x": "1"}, {"orders/0": "-1"}, {"orders/0": "ten"}} {
			err := r.Read(context.Background(), from, 10, (&streamSink{}).emit)
			if err == nil || !strings.Contains(err.Error(), "kafka position") {
				t.Fatalf("Read from %v = %v, want a position error", from, err)
			}
		}
	})
	t.Run("a bad spec is refused", func(t *testing.T) {
		for _, spec := range []*structs.KafkaSource{
			nil,
			{Topics: []string{"t"}, Group: "g", StartOffset: "earliest"},
			{Brokers: []string{"b:9092"}, Topics: []string{"t"}, Group: "g", StartOffset: "newest"},
		} {
			if _, err := NewKafka("orders", spec, Env{}); err == nil {
				t.Fatalf("NewKafka(%+v) succeeded, want an error", spec)
			}
		}
	})
}

// testRecordJSON is the message of record id; checkStreamIDs knows it.
func testRecordJSON(id int) string {
	return fmt.Sprintf(`{"id":%d,"v":"value-%d"}`, id, id)
}

// The helpers below are shared by the stream readers' tests (Kafka, NATS).

// streamSink is an Emit that commits as the registry does: it keeps each
// batch and merges its Advance into its position. It can fail one batch,
// before or after committing it.
type streamSink struct {
	failAt           int   // the 1-based call that fails; 0 for none
	failErr          error // what it returns
	commitBeforeFail bool  // whether the failing call commits first
	// before, when set, runs first in every call, given the call's
	// number; it may block until ctx ends.
	before func(ctx context.Context, call int)

	// mu guards the fields below.
	mu        sync.Mutex
	calls     int
	committed []Batch
	pos       Position
}

func (s *streamSink) emit(ctx context.Context, b Batch) error {
	s.mu.Lock()
	s.calls++
	call := s.calls
	s.mu.Unlock()
	if s.before != nil {
		s.before(ctx, call)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	failing := call == s.failAt
	if failing && !s.commitBeforeFail {
		return s.failErr
	}
	s.committed = append(s.committed, b)
	if s.pos == nil {
		s.pos = make(Position)
	}
	maps.Copy(s.pos, b.Advance)
	if failing {
		return s.failErr
	}
	return nil
}

// callCount is the number of calls so far, failed ones included.
func (s *streamSink) callCount() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.calls
}

// len is the number of records committed, good and bad.
func (s *streamSink) len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, b := range s.committed {
		n += b.Len()
	}
	return n
}

func (s *streamSink) position() Position {
	s.mu.Lock()
	defer s.mu.Unlock()
	return maps.Clone(s.pos)
}

// positionAfter is the position after the first n committed batches.
func (s *streamSink) positionAfter(n int) Position {
	s.mu.Lock()
	defer s.mu.Unlock()
	pos := make(Position)
	for _, b := range s.committed[:n] {
		maps.Copy(pos, b.Advance)
	}
	return pos
}

func (s *streamSink) records() []Record {
	s.mu.Lock()
	defer s.mu.Unlock()
	var recs []Record
	for _, b := range s.committed {
		recs = append(recs, b.Records...)
	}
	return recs
}

func (s *streamSink) bad() []BadRecord {
	s.mu.Lock()
	defer s.mu.Unlock()
	var bad []BadRecord
	for _, b := range s.committed {
		bad = append(bad, b.Bad...)
	}
	return bad
}

// checkBatches checks that every batch held 1 to maxBatch records and
// moved the position.
func (s *streamSink) checkBatches(t *testing.T, maxBatch int) {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	for i, b := range s.committed {
		if b.Len() < 1 || b.Len() > maxBatch {
			t.Errorf("batch %d holds %d records, want 1 to %d", i, b.Len(), maxBatch)
		}
		if len(b.Advance) == 0 {
			t.Errorf("batch %d does not move the position", i)
		}
	}
}

// checkStreamIDs checks that recs are the records 0 to n-1 of
// testRecordJSON, each exactly once: their number, a checksum of their IDs,
// and each record's value.
func checkStreamIDs(t *testing.T, recs []Record, n int) {
	t.Helper()
	seen := make(map[int64]int)
	var sum int64
	for _, rec := range recs {
		id, ok := rec["id"].(int64)
		if !ok {
			t.Fatalf("record %v has no int64 id", rec)
		}
		if want := fmt.Sprintf("value-%d", id); rec["v"] != want {
			t.Errorf("record %d has v %v, want %q", id, rec["v"], want)
		}
		seen[id]++
		sum += id
	}
	for id, count := range seen {
		if count != 1 {
			t.Errorf("record %d read %d times", id, count)
		}
	}
	if len(recs) != n || len(seen) != n || sum != int64(n*(n-1)/2) {
		t.Fatalf("read %d records, %d distinct, ID sum %d; want %d records, ID sum %d",
			len(recs), len(seen), sum, n, n*(n-1)/2)
	}
}

// checkBadRecords checks that the malformed messages arrived as bad
// records, each once, with their offsets and raw text.
func checkBadRecords(t *testing.T, got, want []BadRecord) {
	t.Helper()
	byOffset := make(map[string]BadRecord)
	for _, b := range got {
		if _, dup := byOffset[b.Offset]; dup {
			t.Errorf("bad record %s read twice", b.Offset)
		}
		if b.Reason == "" {
			t.Errorf("bad record %s has no reason", b.Offset)
		}
		byOffset[b.Offset] = b
	}
	if len(got) != len(want) {
		t.Errorf("read %d bad records, want %d", len(got), len(want))
	}
	for _, w := range want {
		b, ok := byOffset[w.Offset]
		switch {
		case !ok:
			t.Errorf("bad record %s is missing; read %v", w.Offset, got)
		case b.Raw != w.Raw:
			t.Errorf("bad record %s has raw %q, want %q", w.Offset, b.Raw, w.Raw)
		}
	}
}

func sameIDs(got, want []int) bool {
	seen := make(map[int]int)
	for _, id := range got {
		seen[id]++
	}
	for _, id := range want {
		seen[id]--
	}
	for _, n := range seen {
		if n != 0 {
			return false
		}
	}
	return true
}

// streamRead is a Read running in its own goroutine.
type streamRead struct {
	cancel context.CancelFunc
	done   chan error
}

// startStreamRead runs r.Read until stop, wait, or the end of the test.
func startStreamRead(t *testing.T, r Reader, from Position, maxBatch int, emit Emit) *streamRead {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	sr := &streamRead{cancel: cancel, done: make(chan error, 1)}
	go func() { sr.done <- r.Read(ctx, from, maxBatch, emit) }()
	t.Cleanup(func() {
		cancel()
		<-sr.done
	})
	return sr
}

// stop cancels the Read and returns what it returned.
func (sr *streamRead) stop(t *testing.T) error {
	t.Helper()
	sr.cancel()
	return sr.wait(t, 20*time.Second)
}

// wait returns what Read returned, failing the test if it runs longer
// than timeout.
func (sr *streamRead) wait(t *testing.T, timeout time.Duration) error {
	t.Helper()
	select {
	case err := <-sr.done:
		sr.done <- err // for the next wait and the cleanup
		return err
	case <-time.After(timeout):
		t.Fatalf("Read still running after %v", timeout)
		return nil
	}
}

// finished reports whether Read has returned.
func (sr *streamRead) finished() bool {
	select {
	case err := <-sr.done:
		sr.done <- err
		return true
	default:
		return false
	}
}

// streamWaitFor polls cond until it holds, failing the test after timeout.
func streamWaitFor(t *testing.T, timeout time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("condition not met after %v", timeout)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// streamLeakCheck fails the test if a goroutine it started outlives it.
// Call it first, so that its cleanup runs after all the others.
func streamLeakCheck(t *testing.T) {
	before := goleak.IgnoreCurrent()
	t.Cleanup(func() { goleak.VerifyNone(t, before) })
}
