package transport

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/hashicorp/yamux"
	"github.com/vmihailenco/msgpack/v5"
)

const (
	// requestReadTimeout bounds how long a server waits for a request's header
	// and body once the stream is open.
	requestReadTimeout = 30 * time.Second
	// responseWriteTimeout bounds writing a response to a slow or gone client.
	responseWriteTimeout = 10 * time.Second
)

// Decoder decodes the msgpack body of a request into v. A handler calls it at
// most once, and only during the call.
type Decoder interface {
	Decode(v any) error
}

// Handler serves one RPC method. ctx carries the caller's deadline and is
// cancelled when the transport shuts down. The returned value is msgpack-encoded
// as the reply; a returned error is sent as a RemoteError whose code is taken
// from the first error in its chain with an ErrCode() string method, else
// CodeInternal.
type Handler func(ctx context.Context, dec Decoder) (any, error)

// requestHeader precedes the msgpack-encoded arguments on an RPC stream.
type requestHeader struct {
	Method string `msgpack:"m"`
	// Timeout is what was left of the caller's deadline, in nanoseconds (0: none).
	// A duration rather than a time, so clocks of the two nodes need not agree.
	Timeout int64 `msgpack:"t"`
}

// responseHeader precedes the msgpack-encoded reply, which is present only when
// Code is empty.
type responseHeader struct {
	Code    string `msgpack:"c"`
	Message string `msgpack:"e"`
}

// Register installs h under method, replacing any previous handler.
func (t *Transport) Register(method string, h Handler) {
	t.handlersMu.Lock()
	t.handlers[method] = h
	t.handlersMu.Unlock()
}

func (t *Transport) handler(method string) Handler {
	t.handlersMu.RLock()
	defer t.handlersMu.RUnlock()
	return t.handlers[method]
}

// peer is the outgoing session to one address.
type peer struct {
	// dialing serializes dials to the address; a channel rather than a mutex so
	// that waiters give up when their context ends.
	dialing chan struct{}
	sess    *yamux.Session // guarded by Transport.mu
	// cert is the verified leaf certificate the remote presented in the TLS
	// handshake of sess; nil without TLS. Guarded by Transport.mu.
	cert *x509.Certificate
}

var (
	bufPool    = sync.Pool{New: func() any { return new(bytes.Buffer) }}
	readerPool = sync.Pool{New: func() any { return bufio.NewReaderSize(nil, 4096) }}
)

// putBuffer recycles buf unless one large message made it big: the pool should
// not pin megabytes for the next small call.
func putBuffer(buf *bytes.Buffer) {
	if buf.Cap() <= 64<<10 {
		bufPool.Put(buf)
	}
}

// newStreamDecoder returns a decoder reading r through a pooled buffer
// (msgpack would allocate a fresh 4 KiB bufio.Reader per stream otherwise), and
// the function that returns the buffer to its pool. The decoder itself is
// fresh: msgpack's pooled decoders keep the buffer a string claiming a huge
// length grew (see structs.Decode), so one malformed stream would leave it in
// the pool for every later call.
func newStreamDecoder(r io.Reader) (*msgpack.Decoder, func()) {
	br := readerPool.Get().(*bufio.Reader)
	br.Reset(r)
	dec := msgpack.NewDecoder(br)
	return dec, func() {
		br.Reset(nil)
		readerPool.Put(br)
	}
}

// Call invokes method on the node at addr (its advertised host:port), sending
// args and decoding the reply into reply (a pointer; nil to discard it).
//
// It returns nil, a *RemoteError when the remote handler failed, or an error
// wrapping ErrUnreachable (nothing was delivered), ErrConnLost (the request may
// have been delivered), ErrShutdown, or the context's error when ctx ended first.
// The ctx deadline is sent along and bounds the remote handler too.
func (t *Transport) Call(ctx context.Context, addr, method string, args, reply any) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("transport: call %s on %s: %w", method, addr, err)
	}
	req := bufPool.Get().(*bytes.Buffer)
	req.Reset()
	recycle := true
	defer func() {
		if recycle {
			putBuffer(req)
		}
	}()
	if err := encodeRequest(ctx, req, method, args); err != nil {
		return err
	}

	for attempt := 0; ; attempt++ {
		sess, _, err := t.session(ctx, addr)
		if err != nil {
			if ctxErr := ctx.Err(); ctxErr != nil && !errors.Is(err, ctxErr) {
				// The dialer reports the caller's deadline as a plain timeout.
				return fmt.Errorf("%w: %w", err, ctxErr)
			}
			return err
		}
		stream, err := t.send(ctx, sess, req.Bytes())
		var notSent *notSentError
		switch {
		case err == nil:
			return t.receive(ctx, stream, addr, method, reply)
		case errors.Is(err, errAbandoned):
			// A send goroutine still reads req; leave the buffer to the GC.
			recycle = false
			return fmt.Errorf("transport: call %s on %s: %w", method, addr, ctx.Err())
		case errors.As(err, &notSent):
			// The pooled session was dead (the remote restarted or a fault
			// closed it) and nothing reached the remote: drop it and redial once.
			t.forgetSession(addr, sess)
			if attempt == 0 && ctx.Err() == nil {
				continue
			}
			return fmt.Errorf("%w: %s: %w", ErrUnreachable, addr, notSent.err)
		case ctx.Err() != nil:
			return fmt.Errorf("transport: call %s on %s: %w", method, addr, ctx.Err())
		default:
			return fmt.Errorf("%w: write %s on %s: %w", ErrConnLost, method, addr, err)
		}
	}
}

func encodeRequest(ctx context.Context, buf *bytes.Buffer, method string, args any) error {
	hdr := requestHeader{Method: method}
	if deadline, ok := ctx.Deadline(); ok {
		hdr.Timeout = max(int64(time.Until(deadline)), 1)
	}
	enc := msgpack.GetEncoder()
	defer msgpack.PutEncoder(enc)
	enc.Reset(buf)
	if err := enc.Encode(&hdr); err != nil {
		return fmt.Errorf("transport: encode %s request header: %w", method, err)
	}
	if err := enc.Encode(args); err != nil {
		return fmt.Errorf("transport: encode %s arguments: %w", method, err)
	}
	return nil
}

// notSentError marks a failure to open the stream, before any byte of the
// request left: safe to retry on a new session.
type notSentError struct{ err error }

func (e *notSentError) Error() string { return e.err.Error() }

// errAbandoned: Call stopped waiting for a send that is still blocked.
var errAbandoned = errors.New("transport: send abandoned")

// send opens a stream and writes the request on it. yamux blocks both steps
// until its send loop has written the frames (up to its ConnectionWriteTimeout)
// and ignores stream deadlines while doing so, so with a cancellable ctx they
// run on a goroutine that Call can walk away from.
func (t *Transport) send(ctx context.Context, sess *yamux.Session, req []byte) (*yamux.Stream, error) {
	if ctx.Done() == nil {
		return openAndWrite(sess, req)
	}
	type result struct {
		stream *yamux.Stream
		err    error
	}
	done := make(chan result, 1)
	var claimed atomic.Bool // whoever sets it first decides who closes the stream
	started := t.goFunc(func() {
		stream, err := openAndWrite(sess, req)
		if claimed.CompareAndSwap(false, true) {
			done <- result{stream, err}
			return
		}
		if stream != nil { // Call gave up
			stream.Close()
		}
	})
	if !started {
		return nil, ErrShutdown
	}
	select {
	case r := <-done:
		return r.stream, r.err
	case <-ctx.Done():
		if claimed.CompareAndSwap(false, true) {
			return nil, errAbandoned
		}
		r := <-done
		return r.stream, r.err
	}
}

func openAndWrite(sess *yamux.Session, req []byte) (*yamux.Stream, error) {
	stream, err := sess.OpenStream()
	if err != nil {
		return nil, &notSentError{err}
	}
	if _, err := stream.Write(req); err != nil {
		stream.Close()
		// A request within the initial window is one frame. The stream found
		// closed before sending, or the kernel refusing the write (the peer
		// reset the connection: it restarted before this session noticed),
		// means the remote never read that frame. Anything else is not retried:
		// yamux may report ErrSessionShutdown for a frame it did write, and a
		// retry could then run the call twice.
		if len(req) <= singleFrame && (errors.Is(err, yamux.ErrStreamClosed) ||
			errors.Is(err, syscall.EPIPE) || errors.Is(err, syscall.ECONNRESET)) {
			return nil, &notSentError{err}
		}
		return nil, err
	}
	return stream, nil
}

// singleFrame is yamux's initial stream window: a write up to this size goes
// out as one data frame.
const singleFrame = 256 * 1024

// longAgo is a deadline in the past: setting it wakes blocked stream I/O.
var longAgo = time.Unix(1, 0)

// receive reads the response from stream and closes it.
func (t *Transport) receive(ctx context.Context, stream *yamux.Stream, addr, method string, reply any) error {
	defer stream.Close()
	// The context alone ends the call (deadline or cancel). A stream deadline set
	// from ctx's deadline could fire a hair before ctx reports it and turn a
	// timeout into ErrConnLost.
	stop := context.AfterFunc(ctx, func() { _ = stream.SetReadDeadline(longAgo) })
	defer stop()

	ioErr := func(err error) error {
		if ctxErr := ctx.Err(); ctxErr != nil {
			return fmt.Errorf("transport: call %s on %s: %w", method, addr, ctxErr)
		}
		return fmt.Errorf("%w: read %s reply from %s: %w", ErrConnLost, method, addr, err)
	}
	dec, release := newStreamDecoder(stream)
	defer release()
	var hdr responseHeader
	if err := dec.Decode(&hdr); err != nil {
		return ioErr(err)
	}
	if hdr.Code != "" {
		return &RemoteError{Code: hdr.Code, Message: hdr.Message}
	}
	if reply == nil {
		return nil
	}
	if err := dec.Decode(reply); err != nil {
		if isIOError(err) {
			return ioErr(err)
		}
		return fmt.Errorf("transport: decode %s reply from %s: %w", method, addr, err)
	}
	return nil
}

func isIOError(err error) bool {
	var netErr net.Error
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, yamux.ErrSessionShutdown) || errors.Is(err, yamux.ErrStreamClosed) ||
		errors.Is(err, yamux.ErrConnectionReset) || errors.As(err, &netErr)
}

// session returns the pooled session to addr, dialing a new one when there is
// none or it is closed, and the certificate the remote presented on it (nil
// without TLS).
func (t *Transport) session(ctx context.Context, addr string) (*yamux.Session, *x509.Certificate, error) {
	t.mu.RLock()
	if p := t.peers[addr]; p != nil && !t.closed && p.sess != nil && !p.sess.IsClosed() {
		sess, cert := p.sess, p.cert
		t.mu.RUnlock()
		return sess, cert, nil
	}
	t.mu.RUnlock()

	t.mu.Lock()
	if t.closed {
		t.mu.Unlock()
		return nil, nil, ErrShutdown
	}
	p := t.peers[addr]
	if p == nil {
		p = &peer{dialing: make(chan struct{}, 1)}
		t.peers[addr] = p
	}
	if p.sess != nil && !p.sess.IsClosed() {
		sess, cert := p.sess, p.cert
		t.mu.Unlock()
		return sess, cert, nil
	}
	t.mu.Unlock()

	select {
	case p.dialing <- struct{}{}:
	case <-ctx.Done():
		return nil, nil, fmt.Errorf("%w: %s: %w", ErrUnreachable, addr, ctx.Err())
	}
	defer func() { <-p.dialing }()

	// Another caller may have dialed while this one waited.
	t.mu.Lock()
	if p.sess != nil && !p.sess.IsClosed() {
		sess, cert := p.sess, p.cert
		t.mu.Unlock()
		return sess, cert, nil
	}
	t.mu.Unlock()

	conn, err := t.dial(ctx, addr, ProtoRPC)
	if err != nil {
		return nil, nil, err
	}
	var cert *x509.Certificate
	if tc, ok := conn.(*tls.Conn); ok {
		if certs := tc.ConnectionState().PeerCertificates; len(certs) > 0 {
			cert = certs[0]
		}
	}
	sess, err := yamux.Client(conn, t.yamuxCfg)
	if err != nil {
		conn.Close()
		return nil, nil, fmt.Errorf("%w: %s: %w", ErrUnreachable, addr, err)
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		// Shutdown ran while dialing and closed the sessions it saw, not this one.
		sess.Close()
		return nil, nil, ErrShutdown
	}
	p.sess, p.cert = sess, cert
	t.logger.Debug("opened RPC session", "addr", addr)
	return sess, cert, nil
}

// PeerCertificate returns the leaf certificate the node at addr presented in
// the TLS handshake of this transport's RPC session to it, dialing one (a full
// handshake) when there is none or it broke. The handshake verified it as
// Config.TLS says (chain to the CAs in RootCAs, an IP or DNS SAN for addr's
// host), so it tells who answers at addr: Call to the same addr uses the same
// session while it lives. Deciding whether the certificate names the node the
// caller expects is the caller's job.
//
// It fails with ErrNoTLS when TLS is off, and like Call (ErrUnreachable,
// ErrShutdown) when no session can be set up.
func (t *Transport) PeerCertificate(ctx context.Context, addr string) (*x509.Certificate, error) {
	if t.cfg.TLS == nil {
		return nil, ErrNoTLS
	}
	_, cert, err := t.session(ctx, addr)
	if err != nil {
		return nil, err
	}
	if cert == nil {
		return nil, fmt.Errorf("%w: %s presented no certificate", ErrUnreachable, addr)
	}
	return cert, nil
}

func (t *Transport) forgetSession(addr string, sess *yamux.Session) {
	t.mu.Lock()
	if p := t.peers[addr]; p != nil && p.sess == sess {
		p.sess, p.cert = nil, nil
	}
	t.mu.Unlock()
	sess.Close()
}

// serveSession runs the server side of an RPC connection: one goroutine per stream.
func (t *Transport) serveSession(conn net.Conn) {
	sess, err := yamux.Server(conn, t.yamuxCfg)
	if err != nil {
		t.logger.Error("yamux server", "error", err)
		conn.Close()
		return
	}
	t.mu.Lock()
	if t.closed {
		t.mu.Unlock()
		sess.Close()
		return
	}
	t.inbound[sess] = struct{}{}
	t.mu.Unlock()
	defer func() {
		t.mu.Lock()
		delete(t.inbound, sess)
		t.mu.Unlock()
		sess.Close()
	}()

	for {
		stream, err := sess.AcceptStream()
		if err != nil {
			return
		}
		if !t.goFunc(func() { t.serveStream(stream) }) {
			stream.Close()
			return
		}
	}
}

func (t *Transport) serveStream(stream *yamux.Stream) {
	defer stream.Close()
	_ = stream.SetReadDeadline(time.Now().Add(requestReadTimeout))
	buf := bufPool.Get().(*bytes.Buffer)
	defer putBuffer(buf)
	method, ok := t.serveRequest(&limitReader{r: stream, left: t.cfg.MaxRequestBytes}, buf)
	if !ok {
		return
	}
	_ = stream.SetWriteDeadline(time.Now().Add(responseWriteTimeout))
	if _, err := stream.Write(buf.Bytes()); err != nil {
		t.logger.Debug("write response", "method", method, "error", err)
	}
}

// ErrRequestTooLarge is what reading a request past Config.MaxRequestBytes
// returns; the handler's Decode fails with it.
var ErrRequestTooLarge = errors.New("transport: request larger than max_request_bytes")

// limitReader reads at most left bytes from r, then fails with
// ErrRequestTooLarge (io.LimitReader would end with EOF, which reads as a
// truncated request rather than an oversized one).
type limitReader struct {
	r    io.Reader
	left int64
}

func (l *limitReader) Read(p []byte) (int, error) {
	if l.left <= 0 {
		return 0, ErrRequestTooLarge
	}
	if int64(len(p)) > l.left {
		p = p[:l.left]
	}
	n, err := l.r.Read(p)
	l.left -= int64(n)
	return n, err
}

// serveRequest reads one request from r, runs its handler and leaves the
// encoded response in out. ok is false when the client went away before the
// request header arrived and there is nobody to answer.
func (t *Transport) serveRequest(r io.Reader, out *bytes.Buffer) (method string, ok bool) {
	dec, release := newStreamDecoder(r)
	defer release()

	var (
		hdr   requestHeader
		reply any
		err   error
	)
	if derr := dec.Decode(&hdr); derr != nil {
		if isIOError(derr) {
			return "", false
		}
		err = &RemoteError{Code: CodeBadRequest, Message: fmt.Sprintf("transport: bad request header: %v", derr)}
	} else if h := t.handler(hdr.Method); h == nil {
		err = &RemoteError{Code: CodeUnknownMethod, Message: fmt.Sprintf("transport: unknown method %q", hdr.Method)}
	} else {
		var (
			ctx    context.Context
			cancel context.CancelFunc
		)
		if hdr.Timeout > 0 {
			ctx, cancel = context.WithTimeout(t.ctx, time.Duration(hdr.Timeout))
		} else {
			ctx, cancel = context.WithCancel(t.ctx)
		}
		reply, err = t.invoke(ctx, hdr.Method, h, dec)
		cancel()
	}
	encodeResponse(out, hdr.Method, reply, err)
	return hdr.Method, true
}

// invoke runs h, turning a panic into an error so one bad handler cannot take
// the node down.
func (t *Transport) invoke(ctx context.Context, method string, h Handler, dec Decoder) (reply any, err error) {
	defer func() {
		if r := recover(); r != nil {
			t.logger.Error("RPC handler panicked", "method", method, "panic", r)
			reply, err = nil, fmt.Errorf("transport: handler %s panicked: %v", method, r)
		}
	}()
	return h(ctx, dec)
}

func encodeResponse(buf *bytes.Buffer, method string, reply any, herr error) {
	enc := msgpack.GetEncoder()
	defer msgpack.PutEncoder(enc)
	buf.Reset()
	enc.Reset(buf)
	if herr == nil {
		_ = enc.Encode(&responseHeader{})
		err := enc.Encode(reply)
		if err == nil {
			return
		}
		// The reply cannot be encoded: answer with the error instead.
		herr = fmt.Errorf("transport: encode %s reply: %w", method, err)
		buf.Reset()
	}
	_ = enc.Encode(&responseHeader{Code: errorCode(herr), Message: herr.Error()})
}
