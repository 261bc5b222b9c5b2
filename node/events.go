package node

import (
	"context"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/kilnml/kiln/raftfsm/structs"
	"github.com/kilnml/kiln/transport"
)

// Cluster events for the dashboard's cluster page: what each node saw
// happen to the cluster itself, members joining and leaving (gossip) and
// leadership won or lost (Raft), kept in memory, the last maxEvents per
// node. GET /v1/events asks every node and merges their lists, one entry
// per event however many nodes saw it. Events that the registry records
// (job states, deployments, alerts) are read from the registry instead.

const maxEvents = 200

// ClusterEvent is one event in GET /v1/events.
type ClusterEvent struct {
	At   time.Time `msgpack:"at" json:"at"`
	Kind string    `msgpack:"kind" json:"kind"` // join, leave, leader
	Text string    `msgpack:"text" json:"text"`
	// SeenBy is the node that recorded it (the first, when several did).
	SeenBy string `msgpack:"seen_by" json:"seen_by"`
}

type eventRing struct {
	mu    sync.Mutex
	node  string
	items []ClusterEvent // oldest first, at most maxEvents
}

func (r *eventRing) add(kind, text string) {
	if r == nil {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.items = append(r.items, ClusterEvent{At: time.Now().UTC(), Kind: kind, Text: text, SeenBy: r.node})
	if len(r.items) > maxEvents {
		r.items = slices.Delete(r.items, 0, len(r.items)-maxEvents)
	}
}

func (r *eventRing) list() []ClusterEvent {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.items)
}

const rpcEvents = "operator.events"

// handleEvents answers GET /v1/events?limit=N (default 50): every node's
// events, newest first, an event seen by several nodes within 10 s listed
// once.
func (a *Agent) handleEvents(w http.ResponseWriter, r *http.Request) {
	limit := 50
	if s := r.URL.Query().Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > 1000 {
			writeError(w, structs.Errorf(structs.CodeInvalid, "limit must be an integer from 1 to 1000, not %q", s))
			return
		}
		limit = n
	}
	parts, missing := fanOut(r.Context(), a, rpcEvents, struct{}{}, 5*time.Second, func() ([]ClusterEvent, error) {
		return a.events.list(), nil
	})
	var all []ClusterEvent
	for _, p := range parts {
		all = append(all, p...)
	}
	slices.SortFunc(all, func(x, y ClusterEvent) int { return x.At.Compare(y.At) })
	var out []ClusterEvent
	for _, e := range all {
		dup := false
		for k := len(out) - 1; k >= 0 && e.At.Sub(out[k].At) < 10*time.Second; k-- {
			if out[k].Kind == e.Kind && out[k].Text == e.Text {
				dup = true
				break
			}
		}
		if !dup {
			out = append(out, e)
		}
	}
	slices.Reverse(out)
	if len(out) > limit {
		out = out[:limit]
	}
	if out == nil {
		out = []ClusterEvent{}
	}
	writeJSON(w, http.StatusOK, map[string]any{"items": out, "nodes_missing": missing})
}

func (a *Agent) handleEventsRPC(ctx context.Context, dec transport.Decoder) (any, error) {
	return a.events.list(), nil
}
