package actors

import (
	"context"
	"fmt"

	"github.com/vmihailenco/msgpack/v5"

	"github.com/kilnml/kiln/transport"
)

// deliverArgs is a Tell or Ask crossing nodes. The message is encoded inline
// under its registered name; the receiver reads it as raw bytes (deliverArgsIn)
// and decodes it once it knows the type.
type deliverArgs struct {
	Ref  Ref    `msgpack:"r"`
	Ask  bool   `msgpack:"a"`
	Name string `msgpack:"n"`
	Body any    `msgpack:"b"`
}

type deliverArgsIn struct {
	Ref  Ref                `msgpack:"r"`
	Ask  bool               `msgpack:"a"`
	Name string             `msgpack:"n"`
	Body msgpack.RawMessage `msgpack:"b"`
}

// deliverReply is an Ask's reply, encoded the same way.
type deliverReply struct {
	Name string `msgpack:"n"`
	Body any    `msgpack:"b"`
}

type deliverReplyIn struct {
	Name string             `msgpack:"n"`
	Body msgpack.RawMessage `msgpack:"b"`
}

// deliverRemote sends msg to the node of ref and, for an Ask, returns the reply.
// Errors the remote System reports match the same sentinels as local ones.
func (s *System) deliverRemote(ctx context.Context, ref Ref, msg any, ask bool) (any, error) {
	s.mu.RLock()
	closed := s.closed
	s.mu.RUnlock()
	if closed {
		return nil, fmt.Errorf("%w: deliver to %s: system shut down", ErrStopped, ref)
	}
	if s.cfg.Transport == nil || s.cfg.Resolve == nil {
		return nil, fmt.Errorf("actors: %s is on node %q and this system has no transport to reach it", ref, ref.Node)
	}
	name, err := messageName(msg)
	if err != nil {
		return nil, err
	}
	addr, err := s.cfg.Resolve(ref.Node)
	if err != nil {
		return nil, fmt.Errorf("actors: resolve node %q for %s: %w", ref.Node, ref, err)
	}
	args := &deliverArgs{Ref: ref, Ask: ask, Name: name, Body: msg}
	if !ask {
		return nil, fromRemote(s.cfg.Transport.Call(ctx, addr, methodDeliver, args, nil))
	}
	var rep deliverReplyIn
	if err := s.cfg.Transport.Call(ctx, addr, methodDeliver, args, &rep); err != nil {
		return nil, fromRemote(err)
	}
	return decodeMessage(rep.Name, rep.Body)
}

// handleDeliver serves deliverRemote on the actor's node. ctx carries the
// asker's deadline.
func (s *System) handleDeliver(ctx context.Context, dec transport.Decoder) (any, error) {
	var in deliverArgsIn
	if err := dec.Decode(&in); err != nil {
		return nil, fmt.Errorf("actors: decode delivery: %w", err)
	}
	if in.Ref.Node != s.cfg.NodeID {
		// Never forward: a stale address book must not bounce messages around.
		return nil, fmt.Errorf("%w: %s is not on node %q", ErrNotFound, in.Ref, s.cfg.NodeID)
	}
	msg, err := decodeMessage(in.Name, in.Body)
	if err != nil {
		return nil, err
	}
	if !in.Ask {
		return nil, s.Tell(in.Ref, msg)
	}
	val, err := s.Ask(ctx, in.Ref, msg)
	if err != nil {
		return nil, err
	}
	name, err := messageName(val)
	if err != nil {
		return nil, fmt.Errorf("actors: reply of %s: %w", in.Ref, err)
	}
	return &deliverReply{Name: name, Body: val}, nil
}
