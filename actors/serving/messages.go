package serving

import (
	"context"
	"errors"

	"github.com/kilnml/kiln/actors"
	"github.com/kilnml/kiln/ml"
	"github.com/kilnml/kiln/raftfsm/structs"
)

// ShardKind is the actor kind of a model replica; its actor ID is the
// allocation ID.
const ShardKind = "shard"

// PredictRequest asks a shard to score a batch.
type PredictRequest struct {
	Inputs []ml.Tensor `msgpack:"inputs"`
}

// PredictReply is a shard's answer.
type PredictReply struct {
	Outputs []ml.Tensor `msgpack:"outputs"`
}

// LoadRequest asks a shard for its load; the reply is a *LoadReply.
type LoadRequest struct{}

// LoadReply reports a shard's load.
type LoadReply struct {
	InFlight int64 `msgpack:"in_flight"`
	Served   int64 `msgpack:"served"`
	// Failed is why the replica can no longer serve (a process replica whose
	// server keeps crashing); empty while it is healthy.
	Failed string `msgpack:"failed,omitempty"`
}

func init() {
	actors.RegisterMessage("serving.predict", &PredictRequest{})
	actors.RegisterMessage("serving.predict_reply", &PredictReply{})
	actors.RegisterMessage("serving.load", &LoadRequest{})
	actors.RegisterMessage("serving.load_reply", &LoadReply{})
}

// ShardRef is the Ref of the shard actor that runs an allocation.
func ShardRef(a *structs.Allocation) actors.Ref {
	return actors.Ref{Node: a.NodeID, Kind: ShardKind, ID: a.ID, Gen: a.CreateIndex}
}

// codedError turns a runtime's error into one that keeps its meaning across
// the transport: bad input stays a 400, anything else from the model is a 500
// for this request alone.
func codedError(err error) error {
	var ce *structs.CodedError
	switch {
	case err == nil:
		return nil
	case errors.As(err, &ce):
		return err
	case errors.Is(err, ml.ErrBadInput):
		return structs.Errorf(structs.CodeInvalid, "%v", err)
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled),
		errors.Is(err, actors.ErrStopped): // a replica stopping: another may answer
		return structs.Errorf(structs.CodeUnavailable, "%v", err)
	case errors.Is(err, actors.ErrBusy):
		return structs.Errorf(CodeBusy, "%v", err)
	}
	return structs.Errorf(structs.CodeInternal, "model failed: %v", err)
}

// CodeBusy is the error code of a replica (or every replica) that is too
// busy to take the request: HTTP 429 at the ingress.
const CodeBusy = "busy"
