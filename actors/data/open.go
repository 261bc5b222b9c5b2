package data

import (
	"fmt"
	"net/http"

	"github.com/kilnml/kiln/raftfsm/structs"
)

// Open connects a Reader to a source of a kind read by an actor (all but
// push, whose records come through the node's push endpoint).
func Open(s *structs.Source, env Env, client *http.Client) (Reader, error) {
	spec := s.Spec
	spec.Normalize()
	switch spec.Kind {
	case structs.SourcePostgres:
		return NewPostgres(spec.Name, spec.Postgres, env)
	case structs.SourceHTTP:
		return NewHTTP(spec.Name, spec.HTTP, env, client)
	case structs.SourceFile:
		return NewFile(spec.Name, spec.File, env)
	case structs.SourceKafka:
		return NewKafka(spec.Name, spec.Kafka, env)
	case structs.SourceNATS:
		return NewNATS(spec.Name, spec.NATS, env)
	case structs.SourceDataset:
		return NewDatasetSource(spec.Name, spec.FromDataset, env)
	}
	return nil, fmt.Errorf("data: a %s source is not read by an actor", spec.Kind)
}
