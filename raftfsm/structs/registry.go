package structs

import (
	"path"
	"time"
)

// Registry core commands: nodes and models, and the batch framing. Never
// renumber; add new ones at the end of RangeRegistry (which is full: a new
// core command takes a number from a new range).
const (
	NodeUpsertType  MessageType = 1
	NodeDeleteType  MessageType = 2
	ModelCreateType MessageType = 3
	ModelUpdateType MessageType = 4
	ModelDeleteType MessageType = 5
	// BatchType carries several commands in one log entry (BatchRequest). The
	// leader groups concurrent writes this way so that a round of replication,
	// an fsync and an FSM transaction serve many of them. Its result is a
	// []interface{} with one result per command, in order. It is framing, not
	// a command: raftfsm unwraps it before its command table.
	BatchType MessageType = 6
)

var _ = registerTypes(RangeRegistry,
	TypeDef{NodeUpsertType, "node_upsert"},
	TypeDef{NodeDeleteType, "node_delete"},
	TypeDef{ModelCreateType, "model_create"},
	TypeDef{ModelUpdateType, "model_update"},
	TypeDef{ModelDeleteType, "model_delete"},
	TypeDef{BatchType, "batch"},
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

// BatchRequest is the body of a BatchType entry: complete encoded commands
// ([type][msgpack] each), applied in order. Each command succeeds or fails on its
// own, exactly as if it had its own entry. A batch never nests.
type BatchRequest struct {
	Entries [][]byte `msgpack:"entries"`
}
