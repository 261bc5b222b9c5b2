package transport

import (
	"context"
	"errors"
)

// Sentinel errors. Call wraps them with %w, so test with errors.Is. They describe
// failures of the local side or of the network; a failure reported by the remote
// handler is a *RemoteError instead, so a caller can tell "the remote said no" from
// "could not reach it".
var (
	// ErrUnreachable: no connection to the peer could be set up (dial, TLS
	// handshake, or a Drop fault). The request was not delivered.
	ErrUnreachable = errors.New("transport: peer unreachable")

	// ErrConnLost: the connection failed after the request was written. The remote
	// may or may not have acted on it; only idempotent calls are safe to retry.
	ErrConnLost = errors.New("transport: connection lost")

	// ErrShutdown: the Transport was shut down.
	ErrShutdown = errors.New("transport: shut down")

	// ErrInvalidConfig: Config.Validate rejected the configuration.
	ErrInvalidConfig = errors.New("transport: invalid config")

	// ErrNoTLS: PeerCertificate was asked for a certificate, but the Transport
	// runs without TLS, so peers present none.
	ErrNoTLS = errors.New("transport: TLS is off")
)

// Error codes set by the transport itself. Handlers choose their own codes by
// returning an error with an ErrCode() string method anywhere in its chain.
const (
	// CodeInternal: the handler failed with an error that carries no code, or panicked.
	CodeInternal = "internal"
	// CodeUnknownMethod: no handler is registered under the method name.
	CodeUnknownMethod = "unknown_method"
	// CodeBadRequest: the request header could not be decoded.
	CodeBadRequest = "bad_request"
	// CodeDeadlineExceeded: the handler returned context.DeadlineExceeded.
	CodeDeadlineExceeded = "deadline_exceeded"
	// CodeCanceled: the handler returned context.Canceled (the server is shutting down).
	CodeCanceled = "canceled"
)

// RemoteError is a failure reported by the remote side of a Call: the handler's
// error code and message. It is returned as is (not wrapped) by Call.
type RemoteError struct {
	Code    string
	Message string
}

// Error returns the remote message.
func (e *RemoteError) Error() string { return e.Message }

// ErrCode returns the remote code. Because RemoteError has the same method the
// server looks for, a handler that returns an error it got from another Call
// forwards the original code unchanged.
func (e *RemoteError) ErrCode() string { return e.Code }

// Is makes errors.Is(err, context.DeadlineExceeded) (or context.Canceled) hold for
// a remote handler that failed that way, as it would for a local call.
func (e *RemoteError) Is(target error) bool {
	switch e.Code {
	case CodeDeadlineExceeded:
		return target == context.DeadlineExceeded
	case CodeCanceled:
		return target == context.Canceled
	}
	return false
}

// coder is what the server looks for in a handler's error chain.
type coder interface{ ErrCode() string }

// errorCode picks the code sent for a handler error.
func errorCode(err error) string {
	var c coder
	if errors.As(err, &c) {
		if code := c.ErrCode(); code != "" {
			return code
		}
	}
	switch {
	case errors.Is(err, context.DeadlineExceeded):
		return CodeDeadlineExceeded
	case errors.Is(err, context.Canceled):
		return CodeCanceled
	}
	return CodeInternal
}
