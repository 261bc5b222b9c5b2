package raftfsm

import (
	"fmt"

	"github.com/vmihailenco/msgpack/v5"

	"github.com/kilnml/kiln/raftfsm/structs"
)

// Artifact is one blob that a record references, with the nodes the record
// says hold it. The blob collector keeps every artifact's blob, and the
// leader keeps each one's copies (node's artifacts task); neither needs to
// know which capability the record belongs to.
type Artifact struct {
	Digest  string
	Size    int64
	Holders []string
	// Owner names the record, for logs: "model m version 3".
	Owner string

	cmd func(holders []string) (structs.MessageType, any)
}

// HoldersCommand is the command that records new holders of the blob on its
// record; it checks in Apply that the record still references the blob.
func (a *Artifact) HoldersCommand(holders []string) (structs.MessageType, any) {
	return a.cmd(holders)
}

// Artifacts calls fn for every blob referenced by a model version (its
// file), a run (its artifacts) or a dataset version (its file, its
// quarantine and its sample).
func (t *Txn) Artifacts(fn func(*Artifact)) error {
	if t.err != nil {
		return t.err
	}
	err := t.scan(prefixVersion, "", 0, func(val []byte) error {
		var v structs.ModelVersion
		if err := msgpack.Unmarshal(val, &v); err != nil {
			return err
		}
		if v.Digest == "" {
			return nil // a process version uploaded without a file
		}
		fn(&Artifact{Digest: v.Digest, Size: v.Size, Holders: v.Holders,
			Owner: fmt.Sprintf("model %s version %d", v.Model, v.Version),
			cmd: func(h []string) (structs.MessageType, any) {
				return structs.VersionHoldersType, &structs.VersionHoldersRequest{Model: v.Model, Version: v.Version, Digest: v.Digest, Holders: h}
			}})
		return nil
	}, nil)
	if err != nil {
		return err
	}
	err = t.scan(prefixRunArtifact, "", 0, func(val []byte) error {
		var a structs.RunArtifact
		if err := msgpack.Unmarshal(val, &a); err != nil {
			return err
		}
		fn(&Artifact{Digest: a.Digest, Size: a.Size, Holders: a.Holders,
			Owner: fmt.Sprintf("run %s artifact %s", a.RunID, a.Path),
			cmd: func(h []string) (structs.MessageType, any) {
				c := a
				c.Holders = h
				return structs.RunArtifactPutType, &structs.RunArtifactPutRequest{Artifact: c, HoldersOnly: true}
			}})
		return nil
	}, nil)
	if err != nil {
		return err
	}
	return t.scan(prefixDatasetVersion, "", 0, func(val []byte) error {
		var v structs.DatasetVersion
		if err := msgpack.Unmarshal(val, &v); err != nil {
			return err
		}
		holders := func(digest string) func([]string) (structs.MessageType, any) {
			return func(h []string) (structs.MessageType, any) {
				return structs.DatasetHoldersType, &structs.DatasetHoldersRequest{Dataset: v.Dataset, Version: v.Version, Digest: digest, Holders: h}
			}
		}
		fn(&Artifact{Digest: v.Digest, Size: v.Size, Holders: v.Holders,
			Owner: fmt.Sprintf("dataset %s", v.Ref()), cmd: holders(v.Digest)})
		if q := v.Quarantine; q != nil {
			fn(&Artifact{Digest: q.Digest, Size: q.Size, Holders: q.Holders,
				Owner: fmt.Sprintf("dataset %s quarantine", v.Ref()), cmd: holders(q.Digest)})
		}
		if s := v.Sample; s != nil {
			fn(&Artifact{Digest: s.Digest, Size: s.Size, Holders: s.Holders,
				Owner: fmt.Sprintf("dataset %s sample", v.Ref()), cmd: holders(s.Digest)})
		}
		return nil
	}, nil)
}
