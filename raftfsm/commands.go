package raftfsm

import (
	"bytes"
	"errors"
	"fmt"

	"github.com/dgraph-io/badger/v4"
	"github.com/kilnml/kiln/raftfsm/structs"
	"github.com/vmihailenco/msgpack/v5"
)

// command applies the body of one log entry (without its type byte) through tx.
//
// It returns the result handed back to the proposer: the stored record for writes
// that have one, nil otherwise. A deterministic rejection (bad body, missing or
// duplicate record) is returned as a *structs.CodedError in err; the entry's writes
// are then dropped and the rest of the batch goes on. Any other error means the
// store itself failed, and applying cannot safely continue.
type command func(tx *applyTxn, body []byte) (result interface{}, err error)

// handler pairs a message type with the command that applies it, for
// registerCommands.
type handler struct {
	typ   structs.MessageType
	apply command
}

// commandTable maps a message type (without structs.IgnoreUnknownFlag) to its
// command; nil where there is none. Its zero value is empty and ready, so the
// capability files register into it during package initialisation in whatever
// order Go initialises them.
type commandTable [structs.IgnoreUnknownFlag]command

// commands is the dispatch table: every command the registry applies. Each
// capability fills its part from its <capability>_apply.go with one
// registerCommands call; init checks that nothing structs knows was left out.
var commands commandTable

// registerCommands adds a capability's handlers to the command table. It
// panics — at init, so a binary with a mistake never starts — on a type that
// structs does not know, one outside r, BatchType (framing, unwrapped before
// the table), a nil handler, or a type registered twice. It returns true so
// that it can initialise a blank variable: var _ = registerCommands(...).
func registerCommands(r structs.TypeRange, hs ...handler) bool {
	commands.register(r, hs...)
	return true
}

func (ct *commandTable) register(r structs.TypeRange, hs ...handler) {
	for _, h := range hs {
		switch {
		case h.typ&structs.IgnoreUnknownFlag != 0:
			panic(fmt.Sprintf("raftfsm: command %d registered with the ignore-unknown flag; register the plain type", uint8(h.typ)))
		case !h.typ.Known():
			panic(fmt.Sprintf("raftfsm: command for message type %d, which structs does not know", uint8(h.typ)))
		case !r.Contains(h.typ):
			panic(fmt.Sprintf("raftfsm: command %s (%d) registered under the %v range", h.typ, uint8(h.typ), r))
		case h.typ == structs.BatchType:
			panic("raftfsm: batch is framing, not a command; ApplyBatch unwraps it")
		case h.apply == nil:
			panic(fmt.Sprintf("raftfsm: command %s has a nil handler", h.typ))
		case ct[h.typ] != nil:
			panic(fmt.Sprintf("raftfsm: command %s (%d) registered twice", h.typ, uint8(h.typ)))
		}
		ct[h.typ] = h.apply
	}
}

// missing lists the message types structs knows that have no handler, apart
// from BatchType.
func (ct *commandTable) missing() []structs.MessageType {
	var out []structs.MessageType
	for _, t := range structs.MessageTypes() {
		if t != structs.BatchType && ct[t] == nil {
			out = append(out, t)
		}
	}
	return out
}

func init() {
	// node proposes what structs.MessageType.Known accepts; a known type
	// without a handler would stop every node that applies it.
	if m := commands.missing(); len(m) > 0 {
		panic(fmt.Sprintf("raftfsm: message types without a command: %v", m))
	}
}

// maxRecordBytes bounds one stored record. It is a constant rather than a Badger
// option so that every node rejects the same commands; it also keeps values within
// what Badger accepts in memory (its value threshold, 1 MiB).
const maxRecordBytes = 1 << 20

// op is one staged write: a value to set, or a deletion when del is true.
type op struct {
	key   string
	value []byte
	del   bool
}

// opEstimate bounds Badger's own accounting of one write (key, value, metadata,
// version), so that budgeting with it never underestimates.
func opEstimate(o op) int64 { return int64(len(o.key)+len(o.value)) + 32 }

// applyTxn is what a command sees: reads go through its own staged writes, then the
// batch's Badger transaction (which holds the writes of earlier entries in the
// batch); writes are staged until the command succeeds, so a rejected command leaves
// nothing behind.
type applyTxn struct {
	txn    *badger.Txn
	index  uint64 // Raft index of the entry being applied
	ops    []op
	staged map[string]int // key -> position in ops
	size   int64          // sum of opEstimate over ops
	// tables are the tables the command changes: the entity table of every
	// key it stages, and derived tables it names with touch.
	tables tableSet
}

// touch marks a derived table (TableRoutes) as changed by the command, when
// what it changes is not told by the keys it writes.
func (t *applyTxn) touch(table string) { t.tables = t.tables.add(mustTableID(table)) }

func (t *applyTxn) stage(o op) {
	t.tables = t.tables.add(tableOfKey(o.key))
	if t.staged == nil {
		t.staged = make(map[string]int)
	}
	if i, ok := t.staged[o.key]; ok {
		t.size -= opEstimate(t.ops[i])
		t.ops[i] = o
	} else {
		t.staged[o.key] = len(t.ops)
		t.ops = append(t.ops, o)
	}
	t.size += opEstimate(o)
}

// get decodes the record at key into v and reports whether it exists.
func (t *applyTxn) get(key string, v interface{}) (bool, error) {
	if i, ok := t.staged[key]; ok {
		o := t.ops[i]
		if o.del {
			return false, nil
		}
		return true, msgpack.Unmarshal(o.value, v)
	}
	return getRecord(t.txn, key, v)
}

func (t *applyTxn) put(key string, v interface{}) error {
	b, err := encodeRecord(v)
	if err != nil {
		return fmt.Errorf("raftfsm: encode %s: %w", key, err)
	}
	if len(b) > maxRecordBytes {
		return structs.Errorf(structs.CodeTooLarge, "record %s would be %d bytes, more than %d", key, len(b), maxRecordBytes)
	}
	t.stage(op{key: key, value: b})
	return nil
}

// keysUnder lists the keys under prefix as the batch's transaction sees them.
// Commands use it to delete a record's dependents; the command's own staged
// writes are not included, which no caller needs.
func (t *applyTxn) keysUnder(prefix string) []string {
	opts := badger.DefaultIteratorOptions
	opts.Prefix = []byte(prefix)
	opts.PrefetchValues = false
	it := t.txn.NewIterator(opts)
	defer it.Close()
	var keys []string
	for it.Rewind(); it.Valid(); it.Next() {
		keys = append(keys, string(it.Item().KeyCopy(nil)))
	}
	return keys
}

// encodeRecord encodes a stored record. Map keys are sorted so that every node
// stores (and snapshots) the same bytes for the same state.
func encodeRecord(v interface{}) ([]byte, error) {
	var buf bytes.Buffer
	enc := msgpack.NewEncoder(&buf)
	enc.SetSortMapKeys(true)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

func (t *applyTxn) del(key string) { t.stage(op{key: key, del: true}) }

// getRecord decodes the value at key in txn into v and reports whether it exists.
func getRecord(txn *badger.Txn, key string, v interface{}) (bool, error) {
	item, err := txn.Get([]byte(key))
	if errors.Is(err, badger.ErrKeyNotFound) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("raftfsm: read %s: %w", key, err)
	}
	err = item.Value(func(val []byte) error { return msgpack.Unmarshal(val, v) })
	if err != nil {
		return false, fmt.Errorf("raftfsm: read %s: %w", key, err)
	}
	return true, nil
}

// decodeBody decodes a command body; a body that does not decode is the proposer's
// fault (or a newer proposer's), never a reason to stop.
func decodeBody(t structs.MessageType, body []byte, cmd interface{}) error {
	if err := structs.Decode(body, cmd); err != nil {
		return structs.Errorf(structs.CodeInvalid, "%s: body does not decode: %v", t, err)
	}
	return nil
}
