package structs

import (
	"bytes"
	"errors"
	"fmt"
	"regexp"
	"slices"

	"github.com/vmihailenco/msgpack/v5"
)

// Error codes carried by CodedError. They map to HTTP statuses in node and survive
// the trip through transport, so a forwarded write fails the same way as a local one.
const (
	CodeInvalid  = "invalid_argument" // 400
	CodeNotFound = "not_found"        // 404
	CodeConflict = "already_exists"   // 409
	CodeTooLarge = "too_large"        // 413
	// CodeUnauthenticated: no token, or one that is unknown or expired.
	CodeUnauthenticated = "unauthenticated" // 401
	// CodePermissionDenied: a valid token without the right the request needs.
	CodePermissionDenied = "permission_denied" // 403
	CodeNoLeader         = "no_leader"         // 503
	CodeUnavailable      = "unavailable"       // 503: e.g. leadership lost mid-write, outcome unknown
	CodeNotLeader        = "not_leader"        // internal: a forwarded request reached a non-leader
	CodeInternal         = "internal"          // 500
)

// CodedError is an error with a stable machine-readable code.
type CodedError struct {
	Code    string `msgpack:"code" json:"code"`
	Message string `msgpack:"message" json:"error"`
}

func (e *CodedError) Error() string { return e.Message }

// Errorf builds a CodedError.
func Errorf(code, format string, args ...any) *CodedError {
	return &CodedError{Code: code, Message: fmt.Sprintf(format, args...)}
}

// ErrorCode returns the code of err, or CodeInternal when err carries none.
func ErrorCode(err error) string {
	var ce *CodedError
	if errors.As(err, &ce) {
		return ce.Code
	}
	return CodeInternal
}

// Encode frames a command as a log entry: the type byte, then msgpack.
func Encode(t MessageType, cmd any) ([]byte, error) {
	body, err := msgpack.Marshal(cmd)
	if err != nil {
		return nil, fmt.Errorf("structs: encode %s: %w", t, err)
	}
	buf := make([]byte, 0, 1+len(body))
	buf = append(buf, byte(t))
	return append(buf, body...), nil
}

// Decode reads the body of a log entry (without its type byte) into cmd. Malformed
// input returns an error, never a panic: it may come from the network or from disk.
func Decode(body []byte, cmd any) (err error) {
	// msgpack v5.4.1 panics on some malformed input, e.g. nil where a time.Time is
	// expected (reflect.Value.IsNil on a struct). The decoder is local and cmd is the
	// caller's to discard, so recovering leaves nothing half-changed behind.
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("structs: decode: malformed msgpack: %v", r)
		}
	}()
	// A fresh decoder rather than msgpack.Unmarshal's pooled one: in msgpack v5.4.1
	// a failed read of a string that claims a huge length leaves the decoder's
	// buffer 1 MiB larger, and the pool hands that decoder out again, so a stream of
	// malformed bodies grows memory and copying without bound.
	if err := msgpack.NewDecoder(bytes.NewReader(body)).Decode(cmd); err != nil {
		return fmt.Errorf("structs: decode: %w", err)
	}
	return nil
}

var nameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]{0,62}$`)

// ValidateName checks a user-chosen name (model, deployment, dataset ...). field
// names the JSON field in the error.
func ValidateName(field, name string) error {
	if name == "" {
		return Errorf(CodeInvalid, "%s is required", field)
	}
	if !nameRE.MatchString(name) {
		return Errorf(CodeInvalid, "%s %q is invalid: use 1-63 characters of a-z, 0-9, '.', '_' or '-', starting with a letter or digit", field, name)
	}
	return nil
}

// Limits on free-form fields, checked on the proposer and again in Apply.
const (
	MaxDescriptionLen = 4096
	MaxTags           = 64
	MaxTagKeyLen      = 128
	MaxTagValueLen    = 4096
	MaxOwnerLen       = 256
)

// ErrCode lets transport carry the code across the wire.
func (e *CodedError) ErrCode() string { return e.Code }

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
