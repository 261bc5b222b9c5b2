package data

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"

	"github.com/hashicorp/go-hclog"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/kilnml/kiln/raftfsm/structs"
)

// kafkaReader consumes a source's topics as a member of its consumer group.
//
// The registry, not the group, says where each partition resumes: a
// batch's offsets are committed to the registry by emit, atomically with
// the batch, and only then to the group, so the group's offsets can lag the
// registry's (a crash between the two) but never lead them. Reading from
// the group's offsets would repeat that lag; reading from the registry's
// repeats and loses nothing. Three options of the client make that hold
// under rebalances:
//
//   - AdjustFetchOffsetsFn replaces the offsets the group fetched for every
//     partition this member is newly assigned with the reader's position
//     (or the start offset where the position has no entry), whether the
//     assignment is the first of a Read or comes from a rebalance. A
//     partition kept through a cooperative rebalance is not reassigned; the
//     client goes on from after the last record polled, which is the
//     position too, since every polled record has been emitted.
//   - BlockRebalanceOnPoll holds rebalances from a poll until the batch is
//     emitted and committed to the group, so a batch only ever holds
//     records of partitions this member owns, and the group commit after it
//     is made in the generation that owned them.
//   - DisableAutoCommit, so that nothing reaches the group before emit.
//
// Assigning partitions directly (ConsumePartitions) would be simpler but
// would not follow partitions added to a topic, and would hide the reader
// from the group tools that show its lag. A second member of the group (a
// node that has not yet noticed it lost the source) only takes partitions
// away; what it reads it cannot commit to the registry, whose position it
// no longer matches.
//
// Each Read has its own client: the group is joined with the position Read
// was given, and left when Read returns, so a Read after a failed emit
// starts again from the registry's position, not from where the last
// client had got to.
type kafkaReader struct {
	name    string
	brokers string // for error messages
	spec    structs.KafkaSource
	reset   kgo.Offset // where a partition without a position starts
	logger  hclog.Logger

	client inflight[*kgo.Client]
}

// NewKafka returns a Reader of a Kafka source. spec must be normalized
// (Group and StartOffset set). It does not connect; Read does. Of env it
// takes only the Logger: a Kafka source has no credentials.
func NewKafka(name string, spec *structs.KafkaSource, env Env) (Reader, error) {
	if spec == nil {
		return nil, errors.New("data: kafka source has no kafka block")
	}
	if len(spec.Brokers) == 0 || len(spec.Topics) == 0 || spec.Group == "" {
		return nil, fmt.Errorf("data: kafka source %s needs brokers, topics and a group", name)
	}
	r := &kafkaReader{
		name:    name,
		brokers: strings.Join(spec.Brokers, ","),
		spec:    *spec,
		logger:  env.logger().Named("kafka").With("source", name),
	}
	switch spec.StartOffset {
	case "earliest":
		r.reset = kgo.NewOffset().AtStart()
	case "latest":
		r.reset = kgo.NewOffset().AtEnd()
	default:
		return nil, fmt.Errorf("data: kafka source %s: start offset %q: use earliest or latest", name, spec.StartOffset)
	}
	return r, nil
}

// Read consumes the topics from from until ctx ends, handing each poll of
// at most maxBatch records to emit and committing its offsets to the group
// once emit has returned nil.
func (r *kafkaReader) Read(ctx context.Context, from Position, maxBatch int, emit Emit) error {
	if maxBatch < 1 {
		return fmt.Errorf("data: batch size %d: it must be at least 1", maxBatch)
	}
	pos, err := parseKafkaPosition(from)
	if err != nil {
		return err
	}
	pos.reset = r.reset
	cl, err := r.open(pos)
	if err != nil {
		return err
	}
	defer r.client.release(cl)
	for {
		fetches := cl.PollRecords(ctx, maxBatch)
		err := r.handle(ctx, cl, fetches, pos, emit)
		// Every poll blocks rebalances until this, emitted or not.
		cl.AllowRebalance()
		if err != nil {
			return err
		}
	}
}

// open starts the client of one Read.
func (r *kafkaReader) open(pos *kafkaPosition) (*kgo.Client, error) {
	cl, err := kgo.NewClient(
		kgo.SeedBrokers(r.spec.Brokers...),
		kgo.ClientID("kiln"),
		kgo.ConsumeTopics(r.spec.Topics...),
		kgo.ConsumerGroup(r.spec.Group),
		kgo.DisableAutoCommit(),
		kgo.BlockRebalanceOnPoll(),
		kgo.AdjustFetchOffsetsFn(pos.startOffsets),
		kgo.ConsumeResetOffset(r.reset),
		// Records of aborted transactions were never meant to be read,
		// and ones of open transactions may still be.
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
	)
	if err != nil {
		return nil, fmt.Errorf("data: kafka %s: %w", r.brokers, err)
	}
	if err := r.client.set(cl); err != nil {
		return nil, fmt.Errorf("data: kafka %s: %w", r.brokers, err)
	}
	return cl, nil
}

// handle emits one poll's records and commits them to the group.
func (r *kafkaReader) handle(ctx context.Context, cl *kgo.Client, fetches kgo.Fetches, pos *kafkaPosition, emit Emit) error {
	if err := ctx.Err(); err != nil {
		// Records polled with the end of ctx are not emitted: the next
		// Read reads them again from the registry's position.
		return err
	}
	if err := r.fetchError(fetches); err != nil {
		return err
	}
	recs := fetches.Records()
	if len(recs) == 0 {
		return nil
	}
	b := Batch{Advance: make(Position)}
	for _, rec := range recs {
		key := kafkaKey(rec.Topic, rec.Partition)
		if v, err := DecodeJSONRecord(rec.Value); err != nil {
			b.Bad = append(b.Bad, BadRecord{
				Offset: fmt.Sprintf("%s@%d", key, rec.Offset),
				Reason: err.Error(),
				Raw:    CutRaw(string(rec.Value)),
			})
		} else {
			b.Records = append(b.Records, v)
		}
		// Records of a partition come in offset order; the last wins.
		b.Advance[key] = strconv.FormatInt(rec.Offset+1, 10)
	}
	if err := emit(ctx, b); err != nil {
		return err
	}
	pos.advance(recs)
	// The group's offsets only show tools the lag; the registry has the
	// position, so a failed commit costs nothing but a stale lag.
	if err := cl.CommitRecords(ctx, recs...); err != nil && ctx.Err() == nil {
		r.logger.Warn("committing offsets to the consumer group failed", "group", r.spec.Group, "error", err)
	}
	return nil
}

// fetchError returns the first error of a poll that stops the Read, with
// the brokers in its text, after logging the ones that do not.
func (r *kafkaReader) fetchError(fetches kgo.Fetches) error {
	for _, fe := range fetches.Errors() {
		var loss *kgo.ErrDataLoss
		if errors.As(fe.Err, &loss) {
			// The client has already moved on to the first offset the
			// broker still has; nothing the reader can do but say so.
			r.logger.Warn("records were removed from the topic before they were read", "error", loss)
			continue
		}
		// The rest are fatal or persistent (closed client, lost group
		// session, authorization, unknown topic, corrupt batch): the
		// actor restarts Read, which rejoins from the registry's position.
		if fe.Topic == "" {
			return fmt.Errorf("data: kafka %s: %w", r.brokers, fe.Err)
		}
		return fmt.Errorf("data: kafka %s: topic %s partition %d: %w", r.brokers, fe.Topic, fe.Partition, fe.Err)
	}
	return nil
}

// Close closes the client of a Read in progress, which then returns an
// error; Read is not called after it.
func (r *kafkaReader) Close() error {
	r.client.close()
	return nil
}

// kafkaKey is a partition's key in a Position.
func kafkaKey(topic string, partition int32) string {
	return topic + "/" + strconv.FormatInt(int64(partition), 10)
}

// kafkaPosition is the next offset of each partition read so far, which
// the client's group goroutine reads on every assignment.
type kafkaPosition struct {
	reset kgo.Offset // where a partition without an entry starts

	// mu guards next.
	mu   sync.Mutex
	next map[string]map[int32]int64 // topic → partition → next offset
}

// parseKafkaPosition reads the "<topic>/<partition>" → next offset keys of
// a position.
func parseKafkaPosition(from Position) (*kafkaPosition, error) {
	p := &kafkaPosition{next: make(map[string]map[int32]int64)}
	for key, value := range from {
		i := strings.LastIndexByte(key, '/')
		if i <= 0 {
			return nil, fmt.Errorf("data: kafka position key %q is not <topic>/<partition>", key)
		}
		part, err := strconv.ParseInt(key[i+1:], 10, 32)
		if err != nil || part < 0 {
			return nil, fmt.Errorf("data: kafka position key %q is not <topic>/<partition>", key)
		}
		next, err := strconv.ParseInt(value, 10, 64)
		if err != nil || next < 0 {
			return nil, fmt.Errorf("data: kafka position %s = %q is not an offset", key, value)
		}
		topic := key[:i]
		if p.next[topic] == nil {
			p.next[topic] = make(map[int32]int64)
		}
		p.next[topic][int32(part)] = next
	}
	return p, nil
}

// startOffsets is the client's AdjustFetchOffsetsFn: it replaces the
// offsets the group has for newly assigned partitions with the reader's.
// A partition without a position starts at the reset offset even when the
// group has an offset for it: that offset belongs to an earlier source of
// the same name, since a commit reaches the group only after the registry.
func (p *kafkaPosition) startOffsets(_ context.Context, assigned map[string]map[int32]kgo.Offset) (map[string]map[int32]kgo.Offset, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for topic, parts := range assigned {
		for part := range parts {
			if next, ok := p.next[topic][part]; ok {
				// No epoch: the offset did not come from a fetch
				// of this client, so it has nothing to validate.
				parts[part] = kgo.NewOffset().At(next).WithEpoch(-1)
			} else {
				parts[part] = p.reset
			}
		}
	}
	return assigned, nil
}

// advance records emitted records as read.
func (p *kafkaPosition) advance(recs []*kgo.Record) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, rec := range recs {
		if p.next[rec.Topic] == nil {
			p.next[rec.Topic] = make(map[int32]int64)
		}
		p.next[rec.Topic][rec.Partition] = rec.Offset + 1
	}
}
