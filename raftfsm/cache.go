package raftfsm

// recordCache holds the latest value written for recently changed keys, so that
// the apply path reads back what it wrote without a Badger lookup: registry
// writes are read-modify-write (a tag merge reads the model it updates), and the
// same records are changed again and again. Only the apply path uses it, under
// applyMu; reads through Txn always go to Badger.
//
// A value enters the cache when its write is staged in the batch transaction,
// which is then committed or the process stops (a failed commit panics), so the
// cache never holds a value Badger will not. A Restore replaces the database and
// empties the cache.
type recordCache struct {
	m     map[string]cachedValue
	bytes int
}

type cachedValue struct {
	value   []byte // encoded record; nil when deleted
	deleted bool
}

const (
	maxCachedBytes       = 8 << 20  // all cached values together
	maxCachedRecordBytes = 64 << 10 // larger records are read from Badger
)

func newRecordCache() *recordCache { return &recordCache{m: make(map[string]cachedValue)} }

func (c *recordCache) get(key string) (cachedValue, bool) {
	v, ok := c.m[key]
	return v, ok
}

// put records staged writes. When the cache would outgrow its budget it starts
// over: it is an optimisation, and an empty cache is always correct.
func (c *recordCache) put(ops []op) {
	for _, o := range ops {
		if old, ok := c.m[o.key]; ok {
			c.bytes -= len(old.value)
			delete(c.m, o.key)
		}
		if len(o.value) > maxCachedRecordBytes {
			continue // not cached: the next read goes to Badger, which has it
		}
		if c.bytes+len(o.value) > maxCachedBytes {
			c.reset()
		}
		c.m[o.key] = cachedValue{value: o.value, deleted: o.del}
		c.bytes += len(o.value)
	}
}

func (c *recordCache) reset() {
	clear(c.m)
	c.bytes = 0
}
