package data

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/kilnml/kiln/raftfsm/structs"
)

const (
	// natsAckWait is how long the server waits for the ack of a message
	// it delivered before delivering it again. Only a lost ack makes it
	// matter (see natsReader); it is long so that a slow commit does not
	// have the server deliver a batch a second time for nothing.
	natsAckWait = 30 * time.Second

	// natsIdleWait is how long one pull waits for a message when the
	// consumer has none; a message that comes sooner ends it at once.
	natsIdleWait = time.Second

	// natsServerMaxAckPending is the server's default bound on the
	// messages a consumer has delivered and not had acked; a consumer is
	// given a larger one when a batch is larger, or a fetch would wait
	// for messages the server will not send.
	natsServerMaxAckPending = 1000
)

// natsReader consumes a JetStream stream through a durable pull consumer.
//
// The registry holds the position: the stream sequence of the last message
// committed. A batch is acked only after emit has committed it, so the
// consumer's ack state can lag the registry (a crash between the commit and
// the acks) but never lead it. Two things keep the consumer from
// delivering around the position:
//
//   - Every Read resets the consumer to the message after the position
//     (ResetConsumerToSequence). That drops what the consumer had
//     delivered and not had acked. Without it, after a reader died holding
//     a batch it never committed, the server would deliver the messages
//     after that batch first and the batch itself only when its ack wait
//     ran out, after the position had moved past it, and the sequence
//     check below would then drop it: a lost batch.
//   - Within a Read, every delivery must be the consumer's next one
//     (consumer sequences count deliveries, redeliveries included). A gap
//     means a delivery went elsewhere: another reader of the durable (a
//     node that has not yet noticed it lost the source) or a fetch whose
//     reply never arrived. That message is pending where this reader
//     cannot see it, so Read stops with ErrDeliveryGap, and the next Read
//     resets the consumer again.
//
// What is left are redeliveries of messages this reader has committed,
// after an ack that was lost or came after the ack wait. Their stream
// sequence is at or below the position: they are acked and not emitted.
type natsReader struct {
	name    string
	addr    string // the URL without credentials, for error messages
	spec    structs.NATSSource
	token   string
	ackWait time.Duration // natsAckWait; tests shorten it
	// ack acknowledges one message, jetstream.Msg.Ack; tests drop acks
	// with it to have the server redeliver.
	ack    func(jetstream.Msg) error
	logger hclog.Logger

	conn inflight[*nats.Conn]
}

// NewNATS returns a Reader of a NATS JetStream source. spec must be
// normalized (Durable set). It resolves the token on this node, an error
// wrapping ErrSecret when it is named and missing; it does not connect,
// Read does.
func NewNATS(name string, spec *structs.NATSSource, env Env) (Reader, error) {
	if spec == nil {
		return nil, errors.New("data: nats source has no nats block")
	}
	if spec.URL == "" || spec.Stream == "" || spec.Durable == "" {
		return nil, fmt.Errorf("data: nats source %s needs a url, a stream and a durable consumer", name)
	}
	u, err := url.Parse(spec.URL)
	if err != nil {
		return nil, fmt.Errorf("data: nats source %s: url is not a URL", name)
	}
	// A URL may carry a user, a password or a token before the host.
	u.User = nil
	token, err := env.Resolve("nats.token", spec.Token)
	if err != nil {
		return nil, err
	}
	return &natsReader{
		name:    name,
		addr:    u.String(),
		spec:    *spec,
		token:   token,
		ackWait: natsAckWait,
		ack:     jetstream.Msg.Ack,
		logger:  env.logger().Named("nats").With("source", name),
	}, nil
}

// Read consumes the stream after from until ctx ends, handing each fetch of
// at most maxBatch messages to emit and acking them once emit has returned
// nil.
func (r *natsReader) Read(ctx context.Context, from Position, maxBatch int, emit Emit) error {
	if maxBatch < 1 {
		return fmt.Errorf("data: batch size %d: it must be at least 1", maxBatch)
	}
	last, err := r.parsePosition(from)
	if err != nil {
		return err
	}
	nc, err := r.connect()
	if err != nil {
		return err
	}
	defer r.conn.release(nc)
	js, err := jetstream.New(nc)
	if err != nil {
		return r.fail(ctx, err)
	}
	cons, next, err := r.consumer(ctx, js, last, maxBatch)
	if err != nil {
		return r.fail(ctx, err)
	}
	for {
		msgs, err := r.fetch(ctx, cons, maxBatch)
		if err != nil {
			return r.fail(ctx, err)
		}
		var b Batch
		var seq uint64
		for _, m := range msgs {
			md, err := m.Metadata()
			if err != nil {
				return r.fail(ctx, err)
			}
			if md.Sequence.Consumer != next {
				return fmt.Errorf("data: nats %s: consumer %s made delivery %d while this reader expected %d: %w: another reader took deliveries, or a fetch reply was lost; reading again resets the consumer",
					r.addr, r.spec.Durable, md.Sequence.Consumer, next, ErrDeliveryGap)
			}
			next++
			if md.Sequence.Stream <= last {
				continue // committed already; acked with the batch
			}
			seq = max(seq, md.Sequence.Stream)
			if v, err := DecodeJSONRecord(m.Data()); err != nil {
				b.Bad = append(b.Bad, BadRecord{
					Offset: fmt.Sprintf("seq %d", md.Sequence.Stream),
					Reason: err.Error(),
					Raw:    CutRaw(string(m.Data())),
				})
			} else {
				b.Records = append(b.Records, v)
			}
		}
		if b.Len() > 0 {
			b.Advance = Position{r.spec.Stream: strconv.FormatUint(seq, 10)}
			// On failure the batch stays unacked, not nakked: the
			// next Read resets the consumer to the position, which
			// drops the pending messages, so a nak would only have
			// the server redeliver them to no one.
			if err := emit(ctx, b); err != nil {
				return err
			}
			last = seq
		}
		r.ackAll(msgs)
	}
}

// ackAll acknowledges a committed batch. Ack does not wait for the server
// to confirm, as AckSync would, once per message: a lost ack costs only a
// redelivery, which the sequence check drops, so the round trips would
// slow every batch and buy nothing.
func (r *natsReader) ackAll(msgs []jetstream.Msg) {
	failed := 0
	var first error
	for _, m := range msgs {
		if err := r.ack(m); err != nil {
			failed++
			first = cmp.Or(first, err)
		}
	}
	if failed > 0 {
		r.logger.Warn("acking committed messages failed; the server will deliver them again", "failed", failed, "error", first)
	}
}

// parsePosition reads the last committed stream sequence; 0 is none.
func (r *natsReader) parsePosition(from Position) (uint64, error) {
	v, ok := from[r.spec.Stream]
	if !ok {
		return 0, nil
	}
	last, err := strconv.ParseUint(v, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("data: nats position %s = %q is not a stream sequence", r.spec.Stream, v)
	}
	return last, nil
}

// connect opens the connection of one Read. It does not reconnect: a Read
// that loses the server returns, and the next one resets the consumer, so
// the actor's retry is the only one.
func (r *natsReader) connect() (*nats.Conn, error) {
	opts := []nats.Option{nats.Name("kiln " + r.name), nats.NoReconnect()}
	if r.token != "" {
		opts = append(opts, nats.Token(r.token))
	}
	nc, err := nats.Connect(r.spec.URL, opts...)
	if errors.Is(err, nats.ErrAuthorization) || errors.Is(err, nats.ErrAuthExpired) || errors.Is(err, nats.ErrAuthRevoked) {
		return nil, fmt.Errorf("data: nats %s: %w: %w", r.addr, ErrAuth, err)
	}
	if err != nil {
		return nil, fmt.Errorf("data: nats %s: %w", r.addr, err)
	}
	if err := r.conn.set(nc); err != nil {
		return nil, fmt.Errorf("data: nats %s: %w", r.addr, err)
	}
	return nc, nil
}

// consumer creates or updates the durable consumer and resets it to the
// message after last. It returns the consumer and the consumer sequence of
// its next delivery.
func (r *natsReader) consumer(ctx context.Context, js jetstream.JetStream, last uint64, maxBatch int) (jetstream.Consumer, uint64, error) {
	cfg := jetstream.ConsumerConfig{
		Durable:        r.spec.Durable,
		AckPolicy:      jetstream.AckExplicitPolicy,
		DeliverPolicy:  jetstream.DeliverAllPolicy,
		FilterSubjects: r.spec.Subjects,
		AckWait:        r.ackWait,
	}
	if maxBatch > natsServerMaxAckPending {
		cfg.MaxAckPending = maxBatch
	}
	cons, err := js.CreateOrUpdateConsumer(ctx, r.spec.Stream, cfg)
	if err != nil {
		return nil, 0, fmt.Errorf("stream %s: consumer %s: %w", r.spec.Stream, r.spec.Durable, err)
	}
	reset, err := js.ResetConsumerToSequence(ctx, r.spec.Stream, r.spec.Durable, last+1)
	if err != nil {
		return nil, 0, fmt.Errorf("stream %s: resetting consumer %s to sequence %d (the consumer reset API needs a recent nats-server): %w",
			r.spec.Stream, r.spec.Durable, last+1, err)
	}
	return cons, reset.Delivered.Consumer + 1, nil
}

// fetch returns the messages the consumer has for this reader now, up to
// maxBatch; when it has none, it waits up to natsIdleWait for the first.
// Like a Kafka poll, it never holds messages back to fill a batch.
func (r *natsReader) fetch(ctx context.Context, cons jetstream.Consumer, maxBatch int) ([]jetstream.Msg, error) {
	batch, err := cons.FetchNoWait(maxBatch)
	msgs, err := collectFetched(ctx, batch, err)
	if len(msgs) > 0 || err != nil {
		return msgs, err
	}
	// The deadline also sets the server's expiry of the pull request, a
	// little before it, so the server stops sending before the reader
	// stops listening.
	wctx, cancel := context.WithTimeout(ctx, natsIdleWait)
	defer cancel()
	batch, err = cons.Fetch(1, jetstream.FetchContext(wctx))
	msgs, err = collectFetched(ctx, batch, err)
	if len(msgs) == 0 || err != nil || maxBatch == 1 {
		return msgs, err
	}
	// A message after a wait is often the first of several.
	batch, err = cons.FetchNoWait(maxBatch - 1)
	more, err := collectFetched(ctx, batch, err)
	return append(msgs, more...), err
}

// collectFetched gathers the messages of one fetch, given what Fetch
// returned. A fetch that ends at its deadline has simply found nothing
// more; one that ends with ctx returns ctx's error.
func collectFetched(ctx context.Context, batch jetstream.MessageBatch, err error) ([]jetstream.Msg, error) {
	if err != nil {
		return nil, err
	}
	var msgs []jetstream.Msg
	for m := range batch.Messages() {
		msgs = append(msgs, m)
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if err := batch.Error(); err != nil && !errors.Is(err, context.DeadlineExceeded) {
		return nil, err
	}
	return msgs, nil
}

// fail is the error a Read returns: ctx's once it has ended, else err
// with the server's address.
func (r *natsReader) fail(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return ctx.Err()
	}
	return fmt.Errorf("data: nats %s: %w", r.addr, err)
}

// Close closes the connection of a Read in progress, which then returns
// an error; Read is not called after it.
func (r *natsReader) Close() error {
	r.conn.close()
	return nil
}
