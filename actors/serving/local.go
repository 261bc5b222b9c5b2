package serving

import "sync"

// LocalShards lets the router call a replica on its own node without the
// actor's mailbox: the request goes straight to the shard's batcher, saving
// two goroutine hand-offs per prediction. The actor still owns the replica's
// life (it registers its batcher once the model is loaded and removes it
// before it stops), and a lookup checks the allocation's generation, so a
// caller holding an older allocation never reaches a successor.
type LocalShards struct {
	mu sync.RWMutex
	m  map[string]localShard // guarded by mu: by allocation ID
}

type localShard struct {
	gen uint64
	b   *batcher
}

// NewLocalShards returns an empty table.
func NewLocalShards() *LocalShards { return &LocalShards{m: map[string]localShard{}} }

func (l *LocalShards) add(id string, gen uint64, b *batcher) {
	if l == nil {
		return
	}
	l.mu.Lock()
	l.m[id] = localShard{gen: gen, b: b}
	l.mu.Unlock()
}

func (l *LocalShards) remove(id string, b *batcher) {
	if l == nil {
		return
	}
	l.mu.Lock()
	if cur, ok := l.m[id]; ok && cur.b == b {
		delete(l.m, id)
	}
	l.mu.Unlock()
}

func (l *LocalShards) get(id string, gen uint64) *batcher {
	if l == nil {
		return nil
	}
	l.mu.RLock()
	defer l.mu.RUnlock()
	if s, ok := l.m[id]; ok && s.gen == gen {
		return s.b
	}
	return nil
}
