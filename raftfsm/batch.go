package raftfsm

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/dgraph-io/badger/v4"
	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	"github.com/kilnml/kiln/raftfsm/structs"
)

// ApplyBatch applies committed log entries in one Badger transaction (more than one
// only when the batch outgrows the transaction budget), which also records the
// index of the last entry, and returns one result per entry:
//
//   - nil for entries skipped because their index is at or below the applied index
//     (replay after a restart), for non-command entries, and for deletes;
//   - the stored *structs.Model or *structs.Node for creates, updates and upserts;
//   - a *structs.CodedError for a rejected command, which changes nothing;
//   - for a structs.BatchType entry, a []interface{} with one such result per
//     command it carries (or a *structs.CodedError if its body does not decode).
//
// An entry of unknown type panics, so that an old binary stops rather than diverge,
// unless its type carries structs.IgnoreUnknownFlag. A failing store panics too: the
// entries would otherwise be counted as applied without their effects.
func (f *FSM) ApplyBatch(logs []*raft.Log) []interface{} {
	results := make([]interface{}, len(logs))
	f.applyMu.Lock()
	defer f.applyMu.Unlock()
	f.mu.RLock()
	closed, h := f.closed, f.cur
	f.mu.RUnlock()
	if closed {
		for i := range results {
			results[i] = structs.Errorf(structs.CodeInternal, "%v", ErrClosed)
		}
		return results
	}

	start := f.applied.Load()
	b := &batch{
		log: f.log, db: h.db, txn: h.db.NewTransaction(true),
		index: start, stored: start, partial: f.partial,
	}
	defer func() { b.txn.Discard() }() // also when a command panics
	for i, l := range logs {
		if l.Index <= b.index {
			continue
		}
		if l.Type == raft.LogCommand {
			results[i] = b.applyEntry(l)
		}
		b.index = l.Index
	}
	if err := b.finish(); err != nil {
		panic(fmt.Sprintf("raftfsm: commit entries up to index %d: %v", b.index, err))
	}
	f.partial = b.partial
	if b.index > start {
		f.setIndexes(b.tables, b.index)
		f.applied.Store(b.index)
		f.notifyChanged()
	}
	return results
}

// position says how far into a BatchType entry the state goes: its first Done
// commands are applied. The zero value means no entry is partly applied.
type position struct {
	Index uint64
	Done  uint64
}

func (p position) encode() []byte {
	return binary.BigEndian.AppendUint64(binary.BigEndian.AppendUint64(nil, p.Index), p.Done)
}

// batch is the Badger side of one ApplyBatch call.
type batch struct {
	log hclog.Logger
	db  *badger.DB
	txn *badger.Txn

	ops  []op  // written into txn since its start, to rebuild it after ErrTxnTooBig
	size int64 // sum of opEstimate over ops

	index  uint64 // last Raft index fully processed; recorded by the next commit
	stored uint64 // index recorded by the last commit

	// A BatchType entry may be split across transactions. Then the commit records
	// how many of its commands it holds (keyAppliedPartial), so that a replay after a
	// crash resumes after them instead of applying them twice.
	partial position // as stored
	cur     position // the BatchType entry in progress; zero outside one

	tables tableSet // changed by the commands staged so far (FSM.Index)
}

// errEntryTooLarge rejects a command whose writes do not fit one transaction.
var errEntryTooLarge = errors.New("raftfsm: command writes more than one transaction holds")

func (b *batch) applyEntry(l *raft.Log) interface{} {
	if len(l.Data) > 0 && structs.MessageType(l.Data[0])&^structs.IgnoreUnknownFlag == structs.BatchType {
		return b.applyGroup(l.Index, l.Data[1:])
	}
	return b.applyCommand(l.Index, l.Data)
}

// applyGroup applies the commands of a BatchType entry, each as if it had its own
// entry at index.
func (b *batch) applyGroup(index uint64, body []byte) interface{} {
	var req structs.BatchRequest
	if err := decodeBody(structs.BatchType, body, &req); err != nil {
		return err
	}
	results := make([]interface{}, len(req.Entries))
	b.cur = position{Index: index}
	if b.partial.Index == index {
		b.cur.Done = b.partial.Done // resuming after a crash between two commits
	}
	for i := b.cur.Done; i < uint64(len(req.Entries)); i++ {
		data := req.Entries[i]
		if len(data) > 0 && structs.MessageType(data[0])&^structs.IgnoreUnknownFlag == structs.BatchType {
			results[i] = structs.Errorf(structs.CodeInvalid, "command %d of the batch at index %d is itself a batch", i, index)
		} else {
			results[i] = b.applyCommand(index, data)
		}
		b.cur.Done = i + 1
	}
	b.cur = position{}
	return results
}

func (b *batch) applyCommand(index uint64, data []byte) interface{} {
	tx := &applyTxn{txn: b.txn, index: index}
	res, err := b.dispatch(tx, data)
	if err != nil {
		var ce *structs.CodedError
		if errors.As(err, &ce) {
			return ce
		}
		panic(fmt.Sprintf("raftfsm: apply command at index %d: %v", index, err))
	}
	if len(tx.ops) == 0 {
		return res
	}
	switch err := b.stage(tx); {
	case errors.Is(err, errEntryTooLarge):
		return structs.Errorf(structs.CodeTooLarge, "command at index %d writes about %d bytes, more than the %d one command may", index, tx.size, txnBudgetBytes)
	case err != nil:
		panic(fmt.Sprintf("raftfsm: apply command at index %d: %v", index, err))
	}
	return res
}

func (b *batch) dispatch(tx *applyTxn, data []byte) (interface{}, error) {
	if len(data) == 0 {
		return nil, structs.Errorf(structs.CodeInvalid, "command at index %d is empty", tx.index)
	}
	t := structs.MessageType(data[0])
	ignoreUnknown := t&structs.IgnoreUnknownFlag != 0
	t &^= structs.IgnoreUnknownFlag
	if cmd := commands[t]; cmd != nil {
		return cmd(tx, data[1:])
	}
	if ignoreUnknown {
		b.log.Warn("skipping command of unknown type; upgrade this node", "type", uint8(data[0]), "index", tx.index)
		return nil, nil
	}
	panic(fmt.Sprintf("raftfsm: command at index %d has unknown message type %d: this binary is older than the cluster's; upgrade it", tx.index, uint8(data[0])))
}

// stage writes a successful command's ops into the batch transaction, committing
// what came before first when the budget would be exceeded.
func (b *batch) stage(tx *applyTxn) error {
	if tx.size > txnBudgetBytes || len(tx.ops) > txnBudgetOps {
		return errEntryTooLarge
	}
	if b.size+tx.size > txnBudgetBytes || len(b.ops)+len(tx.ops) > txnBudgetOps {
		if err := b.commit(); err != nil {
			return err
		}
	}
	err := writeOps(b.txn, tx.ops)
	if errors.Is(err, badger.ErrTxnTooBig) {
		// Our estimate fell short of Badger's accounting. The transaction holds part
		// of this command: rebuild it without, commit it, and retry alone.
		b.log.Warn("badger transaction too big; splitting the batch", "index", tx.index, "ops", len(b.ops)+len(tx.ops))
		b.txn.Discard()
		b.txn = b.db.NewTransaction(true)
		if err := writeOps(b.txn, b.ops); err != nil {
			return err
		}
		if err := b.commit(); err != nil {
			return err
		}
		err = writeOps(b.txn, tx.ops)
		if errors.Is(err, badger.ErrTxnTooBig) {
			b.txn.Discard()
			b.txn = b.db.NewTransaction(true)
			return errEntryTooLarge
		}
	}
	if err != nil {
		return err
	}
	b.ops = append(b.ops, tx.ops...)
	b.size += tx.size
	b.tables |= tx.tables
	return nil
}

// commit records the position in the open transaction, commits it, and opens the
// next. The position is the last whole entry, plus the commands of a BatchType
// entry in progress when the budget splits one.
func (b *batch) commit() error {
	if err := b.txn.Set([]byte(keyAppliedIndex), encodeIndex(b.index)); err != nil {
		return err
	}
	partial := position{}
	if b.cur.Done > 0 {
		partial = b.cur
	}
	if partial != b.partial {
		var err error
		if partial == (position{}) {
			err = b.txn.Delete([]byte(keyAppliedPartial))
		} else {
			err = b.txn.Set([]byte(keyAppliedPartial), partial.encode())
		}
		if err != nil {
			return err
		}
	}
	if err := b.txn.Commit(); err != nil {
		return err
	}
	b.stored, b.partial = b.index, partial
	b.txn = b.db.NewTransaction(true)
	b.ops, b.size = b.ops[:0], 0
	return nil
}

// finish commits what is left, if anything advanced the index.
func (b *batch) finish() error {
	if b.index == b.stored {
		return nil
	}
	return b.commit()
}

func writeOps(txn *badger.Txn, ops []op) error {
	for _, o := range ops {
		var err error
		if o.del {
			err = txn.Delete([]byte(o.key))
		} else {
			err = txn.Set([]byte(o.key), o.value)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

func encodeIndex(index uint64) []byte {
	return binary.BigEndian.AppendUint64(nil, index)
}

func readAppliedIndex(txn *badger.Txn) (uint64, error) {
	var index uint64
	err := readMeta(txn, keyAppliedIndex, 8, func(v []byte) { index = binary.BigEndian.Uint64(v) })
	return index, err
}

func readAppliedPartial(txn *badger.Txn) (position, error) {
	var p position
	err := readMeta(txn, keyAppliedPartial, 16, func(v []byte) {
		p = position{Index: binary.BigEndian.Uint64(v), Done: binary.BigEndian.Uint64(v[8:])}
	})
	return p, err
}

// readMeta passes the value of a fixed-size metadata key to fn; a missing key is
// left to the caller's zero value.
func readMeta(txn *badger.Txn, key string, size int, fn func(v []byte)) error {
	item, err := txn.Get([]byte(key))
	if errors.Is(err, badger.ErrKeyNotFound) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("raftfsm: read %s: %w", key, err)
	}
	return item.Value(func(v []byte) error {
		if len(v) != size {
			return fmt.Errorf("raftfsm: %s is %d bytes, want %d", key, len(v), size)
		}
		fn(v)
		return nil
	})
}
