package transport

import (
	"context"
	"errors"
	"net"
	"sync"
	"time"

	"github.com/hashicorp/raft"
)

// errStreamLayerClosed is returned by Accept once raft closed the stream layer.
var errStreamLayerClosed = errors.New("transport: raft stream layer closed")

// StreamLayer returns the raft.StreamLayer of this transport, for
// raft.NewNetworkTransport. Accept yields the connections whose first byte was
// ProtoRaft; Dial writes ProtoRaft first. Its Close (raft calls it on shutdown)
// only stops Accept, for good: the listener stays up for RPC, and one Transport
// serves one raft instance.
func (t *Transport) StreamLayer() raft.StreamLayer { return t.raft }

type streamLayer struct {
	t         *Transport
	acceptCh  chan net.Conn
	closeOnce sync.Once
	closeCh   chan struct{}
}

func newStreamLayer(t *Transport) *streamLayer {
	return &streamLayer{t: t, acceptCh: make(chan net.Conn), closeCh: make(chan struct{})}
}

// handoff blocks until raft accepts conn or the layer closes, so an
// unaccepted connection is never left open behind raft's back.
func (l *streamLayer) handoff(conn net.Conn) {
	select {
	case l.acceptCh <- conn:
	case <-l.closeCh:
		conn.Close()
	case <-l.t.ctx.Done():
		conn.Close()
	}
}

func (l *streamLayer) Accept() (net.Conn, error) {
	select {
	case conn := <-l.acceptCh:
		return conn, nil
	case <-l.closeCh:
		return nil, errStreamLayerClosed
	case <-l.t.ctx.Done():
		return nil, ErrShutdown
	}
}

func (l *streamLayer) Close() error {
	l.closeOnce.Do(func() { close(l.closeCh) })
	return nil
}

func (l *streamLayer) Addr() net.Addr { return advertisedAddr(l.t.addr) }

func (l *streamLayer) Dial(address raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	ctx, cancel := context.WithTimeout(l.t.ctx, timeout)
	defer cancel()
	return l.t.dial(ctx, string(address), ProtoRaft)
}

// advertisedAddr is a net.Addr whose String is the advertised address, which is
// what raft records as this server's address.
type advertisedAddr string

func (a advertisedAddr) Network() string { return "tcp" }
func (a advertisedAddr) String() string  { return string(a) }
