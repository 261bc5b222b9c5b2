package structs

import (
	"bytes"
	"errors"
	"fmt"
	"path"
	"regexp"
	"slices"
	"time"

	"github.com/vmihailenco/msgpack/v5"
)

// MessageType selects the handler of a Raft log entry. It is append-only.
type MessageType uint8

// IgnoreUnknownFlag, set on a MessageType, lets an older node skip an entry it does
// not know instead of stopping. Use it for entries that only add optional state.
const IgnoreUnknownFlag MessageType = 128

// Registry commands. Never renumber; add new ones at the end.
const (
	NodeUpsertType  MessageType = 1
	NodeDeleteType  MessageType = 2
	ModelCreateType MessageType = 3
	ModelUpdateType MessageType = 4
	ModelDeleteType MessageType = 5
	// BatchType carries several commands in one log entry (BatchRequest). The
	// leader groups concurrent writes this way so that a round of replication,
	// an fsync and an FSM transaction serve many of them. Its result is a
	// []interface{} with one result per command, in order.
	BatchType MessageType = 6
)

// String names a message type for logs and errors.
func (t MessageType) String() string {
	switch t &^ IgnoreUnknownFlag {
	case NodeUpsertType:
		return "node_upsert"
	case NodeDeleteType:
		return "node_delete"
	case ModelCreateType:
		return "model_create"
	case ModelUpdateType:
		return "model_update"
	case ModelDeleteType:
		return "model_delete"
	case BatchType:
		return "batch"
	}
	if name, ok := servingTypeName(t &^ IgnoreUnknownFlag); ok {
		return name
	}
	if name, ok := aclTypeName(t &^ IgnoreUnknownFlag); ok {
		return name
	}
	return fmt.Sprintf("message_type(%d)", uint8(t))
}

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

// GPU is one accelerator found on a node.
type GPU struct {
	Index    int    `msgpack:"index" json:"index"`
	UUID     string `msgpack:"uuid" json:"uuid"`
	Model    string `msgpack:"model" json:"model"`
	MemoryMB int64  `msgpack:"memory_mb" json:"memory_mb"`
}

// Resources are a node's fingerprinted capacities.
type Resources struct {
	CPUCores int   `msgpack:"cpu_cores" json:"cpu_cores"`
	MemoryMB int64 `msgpack:"memory_mb" json:"memory_mb"`
	GPUs     []GPU `msgpack:"gpus" json:"gpus"`
	// GPUSource says how the GPUs were found: nvml, nvidia-smi, config or none.
	GPUSource string `msgpack:"gpu_source" json:"gpu_source"`
}

// Node is the durable record of a cluster member. Memberlist forgets dead nodes;
// this table does not, which is what lets the leader reap them later.
type Node struct {
	ID        string    `msgpack:"id" json:"id"`
	Name      string    `msgpack:"name" json:"name"`
	RPCAddr   string    `msgpack:"rpc_addr" json:"rpc_addr"`
	HTTPAddr  string    `msgpack:"http_addr" json:"http_addr"`
	Version   string    `msgpack:"version" json:"version"`
	Resources Resources `msgpack:"resources" json:"resources"`
	// Exec is what the node's own config lets it run as processes; placement
	// puts process replicas only where it allows the command.
	Exec NodeExec `msgpack:"exec" json:"exec"`
	// RegisteredAt and UpdatedAt are stamped by the proposer.
	RegisteredAt time.Time `msgpack:"registered_at" json:"registered_at"`
	UpdatedAt    time.Time `msgpack:"updated_at" json:"updated_at"`
	CreateIndex  uint64    `msgpack:"create_index" json:"create_index"`
	ModifyIndex  uint64    `msgpack:"modify_index" json:"modify_index"`
}

// NodeExec is a node's exec {} config as the registry knows it.
type NodeExec struct {
	Enabled bool `msgpack:"enabled" json:"enabled"`
	// AllowedCommands are path.Match globs over a command's first word.
	AllowedCommands []string `msgpack:"allowed_commands" json:"allowed_commands"`
}

// Allows reports whether the node may run a command whose first word is
// argv0 (as written in the version, or resolved to a path by the node).
func (e NodeExec) Allows(argv0 ...string) bool {
	if !e.Enabled {
		return false
	}
	for _, pat := range e.AllowedCommands {
		if pat == "*" {
			return true // any command, paths included ('*' alone stops at '/')
		}
		for _, a := range argv0 {
			if ok, _ := path.Match(pat, a); ok && a != "" {
				return true
			}
		}
	}
	return false
}

// MaxNodeIDLen bounds Node.ID, which is part of a storage key.
const MaxNodeIDLen = 256

// Validate checks the fields of a node record that the registry relies on.
func (n *Node) Validate() error {
	if n.ID == "" {
		return Errorf(CodeInvalid, "node id is required")
	}
	if len(n.ID) > MaxNodeIDLen {
		return Errorf(CodeInvalid, "node id is longer than %d bytes", MaxNodeIDLen)
	}
	return nil
}

// Model is a named model in the registry. Versions come with the serving capability.
type Model struct {
	Name        string            `msgpack:"name" json:"name"`
	Description string            `msgpack:"description" json:"description"`
	Owner       string            `msgpack:"owner" json:"owner"`
	Tags        map[string]string `msgpack:"tags" json:"tags"`
	// LatestVersion is the highest version number ever given out; numbers are
	// never reused, even after a version is deleted.
	LatestVersion uint64 `msgpack:"latest_version" json:"latest_version"`
	// Aliases name versions (champion, challenger ...).
	Aliases     VersionMap `msgpack:"aliases" json:"aliases"`
	CreatedAt   time.Time  `msgpack:"created_at" json:"created_at"`
	UpdatedAt   time.Time  `msgpack:"updated_at" json:"updated_at"`
	CreateIndex uint64     `msgpack:"create_index" json:"create_index"`
	ModifyIndex uint64     `msgpack:"modify_index" json:"modify_index"`
}

// Validate checks the user-supplied fields of a model.
func (m *Model) Validate() error {
	if err := ValidateName("name", m.Name); err != nil {
		return err
	}
	if len(m.Description) > MaxDescriptionLen {
		return Errorf(CodeInvalid, "description is longer than %d bytes", MaxDescriptionLen)
	}
	if len(m.Owner) > MaxOwnerLen {
		return Errorf(CodeInvalid, "owner is longer than %d bytes", MaxOwnerLen)
	}
	if len(m.Tags) > MaxTags {
		return Errorf(CodeInvalid, "tags has %d keys, more than %d", len(m.Tags), MaxTags)
	}
	// Sorted, so that the error names the same key on every node.
	for _, k := range sortedKeys(m.Tags) {
		if err := validateTag(k, len(m.Tags[k])); err != nil {
			return err
		}
	}
	return nil
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

func validateTag(key string, valueLen int) error {
	if key == "" {
		return Errorf(CodeInvalid, "tags has an empty key")
	}
	if len(key) > MaxTagKeyLen {
		return Errorf(CodeInvalid, "tags key %.32q... is longer than %d bytes", key, MaxTagKeyLen)
	}
	if valueLen > MaxTagValueLen {
		return Errorf(CodeInvalid, "tags.%s is longer than %d bytes", key, MaxTagValueLen)
	}
	return nil
}

// NodeUpsertRequest registers a node or updates its record.
type NodeUpsertRequest struct {
	Node Node `msgpack:"node"`
}

// NodeDeleteRequest removes a node's record.
type NodeDeleteRequest struct {
	ID string `msgpack:"id"`
}

// ModelCreateRequest adds a model; it fails with CodeConflict if the name exists.
type ModelCreateRequest struct {
	Model Model `msgpack:"model"`
}

// ModelUpdateRequest changes a model in place. Nil fields are left alone. Tags are
// merged: a key with a nil value is deleted, others are set.
type ModelUpdateRequest struct {
	Name        string             `msgpack:"name"`
	Description *string            `msgpack:"description"`
	Owner       *string            `msgpack:"owner"`
	Tags        map[string]*string `msgpack:"tags"`
	UpdatedAt   time.Time          `msgpack:"updated_at"`
}

// Validate checks the request's fields before it is proposed.
func (r *ModelUpdateRequest) Validate() error {
	if err := ValidateName("name", r.Name); err != nil {
		return err
	}
	if r.Description != nil && len(*r.Description) > MaxDescriptionLen {
		return Errorf(CodeInvalid, "description is longer than %d bytes", MaxDescriptionLen)
	}
	if r.Owner != nil && len(*r.Owner) > MaxOwnerLen {
		return Errorf(CodeInvalid, "owner is longer than %d bytes", MaxOwnerLen)
	}
	if len(r.Tags) > MaxTags {
		return Errorf(CodeInvalid, "tags has %d keys, more than %d", len(r.Tags), MaxTags)
	}
	for _, k := range sortedKeys(r.Tags) {
		n := 0
		if v := r.Tags[k]; v != nil {
			n = len(*v)
		}
		if err := validateTag(k, n); err != nil {
			return err
		}
	}
	return nil
}

// Apply merges the request into m. The caller checks the merged tag count.
func (r *ModelUpdateRequest) Apply(m *Model) {
	if r.Description != nil {
		m.Description = *r.Description
	}
	if r.Owner != nil {
		m.Owner = *r.Owner
	}
	for k, v := range r.Tags {
		if v == nil {
			delete(m.Tags, k)
			continue
		}
		if m.Tags == nil {
			m.Tags = make(map[string]string)
		}
		m.Tags[k] = *v
	}
	m.UpdatedAt = r.UpdatedAt
}

// ModelDeleteRequest removes a model.
type ModelDeleteRequest struct {
	Name string `msgpack:"name"`
}

// ErrCode lets transport carry the code across the wire.
func (e *CodedError) ErrCode() string { return e.Code }

// Known reports whether this build can apply entries of type t: a listed type, or
// any type carrying IgnoreUnknownFlag (which Apply skips).
func (t MessageType) Known() bool {
	if t&IgnoreUnknownFlag != 0 {
		return true
	}
	switch t {
	case NodeUpsertType, NodeDeleteType, ModelCreateType, ModelUpdateType, ModelDeleteType, BatchType:
		return true
	}
	if _, ok := servingTypeName(t); ok {
		return true
	}
	_, ok := aclTypeName(t)
	return ok
}

// BatchRequest is the body of a BatchType entry: complete encoded commands
// ([type][msgpack] each), applied in order. Each command succeeds or fails on its
// own, exactly as if it had its own entry. A batch never nests.
type BatchRequest struct {
	Entries [][]byte `msgpack:"entries"`
}
