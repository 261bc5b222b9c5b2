package raftfsm

import (
	"fmt"

	"github.com/kilnml/kiln/raftfsm/structs"
)

// Key layout: every record lives under a short prefix naming its entity, followed
// by its identity; values are the msgpack encoding of the structs type. Keys sort
// by identity within a prefix, which is what Models' paging relies on.
const (
	prefixNode  = "n/" // n/<node id>     -> structs.Node
	prefixModel = "m/" // m/<model name>  -> structs.Model

	// keyAppliedIndex holds the last applied Raft index, 8 bytes big-endian. It is
	// written in the same transaction as the changes of the entries it covers.
	keyAppliedIndex = "meta/applied_index"

	// keyAppliedPartial exists only while a structs.BatchType entry is half applied
	// (its commands were split across transactions): its index and how many of its
	// commands the state holds, 8+8 bytes big-endian.
	keyAppliedPartial = "meta/applied_partial"
)

func nodeKey(id string) string    { return prefixNode + id }
func modelKey(name string) string { return prefixModel + name }

// frameType tags a frame of a snapshot stream. Like structs.MessageType it is
// append-only: snapshots outlive the binary that wrote them.
type frameType uint8

const (
	frameHeader     frameType = 1
	frameNode       frameType = 2
	frameModel      frameType = 3
	frameVersion    frameType = 4
	frameDeployment frameType = 5
	frameAlloc      frameType = 6
	frameACLPolicy  frameType = 7
	frameACLToken   frameType = 8
	frameACLBoot    frameType = 9
	frameFooter     frameType = 255
)

// entity describes one kind of record: where it lives and how it travels in a
// snapshot. A capability that adds a record type adds it here and adds its commands
// to the command table; Snapshot and Restore need nothing else.
type entity struct {
	name   string
	prefix string
	frame  frameType
	// keyOf decodes one record of this entity and returns its key. Restore uses it
	// to place a snapshot frame and to reject records that do not decode. It checks
	// only what the key needs, not today's validation rules, so that a snapshot
	// written by an older version always loads.
	keyOf func(raw []byte) (string, error)
	// validate decodes one record and holds it to the rules the API applies
	// (the structs' Validate methods and what Apply checks besides), naming the
	// record in its error. ValidateSnapshot runs it on snapshots from outside;
	// Restore does not, for the reason given on keyOf.
	validate func(raw []byte) error
}

// entities lists every record type, in the order a snapshot writes them.
var entities = []entity{
	{name: "node", prefix: prefixNode, frame: frameNode, validate: validateNodeRecord, keyOf: func(raw []byte) (string, error) {
		var n structs.Node
		if err := structs.Decode(raw, &n); err != nil {
			return "", err
		}
		if n.ID == "" {
			return "", fmt.Errorf("node record without id")
		}
		return nodeKey(n.ID), nil
	}},
	{name: "model", prefix: prefixModel, frame: frameModel, validate: validateModelRecord, keyOf: func(raw []byte) (string, error) {
		var m structs.Model
		if err := structs.Decode(raw, &m); err != nil {
			return "", err
		}
		if m.Name == "" {
			return "", fmt.Errorf("model record without name")
		}
		return modelKey(m.Name), nil
	}},
	{name: "version", prefix: prefixVersion, frame: frameVersion, validate: validateVersionRecord, keyOf: func(raw []byte) (string, error) {
		var v structs.ModelVersion
		if err := structs.Decode(raw, &v); err != nil {
			return "", err
		}
		if v.Model == "" || v.Version == 0 {
			return "", fmt.Errorf("version record without model or number")
		}
		return versionKey(v.Model, v.Version), nil
	}},
	{name: "deployment", prefix: prefixDeployment, frame: frameDeployment, validate: validateDeploymentRecord, keyOf: func(raw []byte) (string, error) {
		var d structs.Deployment
		if err := structs.Decode(raw, &d); err != nil {
			return "", err
		}
		if d.Name == "" {
			return "", fmt.Errorf("deployment record without name")
		}
		return deploymentKey(d.Name), nil
	}},
	{name: "allocation", prefix: prefixAlloc, frame: frameAlloc, validate: validateAllocRecord, keyOf: func(raw []byte) (string, error) {
		var a structs.Allocation
		if err := structs.Decode(raw, &a); err != nil {
			return "", err
		}
		if a.ID == "" {
			return "", fmt.Errorf("allocation record without id")
		}
		return allocKey(a.ID), nil
	}},
	{name: "acl policy", prefix: prefixACLPolicy, frame: frameACLPolicy, keyOf: aclPolicyKeyOf, validate: validateACLPolicyRecord},
	{name: "acl token", prefix: prefixACLToken, frame: frameACLToken, keyOf: aclTokenKeyOf, validate: validateACLTokenRecord},
	{name: "acl bootstrap", prefix: prefixACLBootstrap, frame: frameACLBoot, keyOf: aclBootstrapKeyOf, validate: validateACLBootstrapRecord},
}

func entityByFrame(t frameType) (entity, bool) {
	for _, e := range entities {
		if e.frame == t {
			return e, true
		}
	}
	return entity{}, false
}
