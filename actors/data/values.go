package data

import (
	"context"
	"fmt"
	"math"
	"strconv"
	"strings"
)

// batcher cuts a reader's records into batches of at most max records (good
// and bad). A full batch is held until the next record arrives, so that the
// batch that ends a unit of the source (a file, a page) is never an empty
// one sent only to carry the position.
type batcher struct {
	ctx  context.Context
	emit Emit
	max  int
	cur  Batch
}

func newBatcher(ctx context.Context, maxBatch int, emit Emit) (*batcher, error) {
	if maxBatch < 1 {
		return nil, fmt.Errorf("data: batch size %d: it must be at least 1", maxBatch)
	}
	return &batcher{ctx: ctx, emit: emit, max: maxBatch}, nil
}

// add appends a good record, first handing over the batch if it is full.
func (b *batcher) add(r Record) error {
	if err := b.makeRoom(); err != nil {
		return err
	}
	b.cur.Records = append(b.cur.Records, r)
	return nil
}

// addBad appends a bad record, first handing over the batch if it is full.
func (b *batcher) addBad(bad BadRecord) error {
	if err := b.makeRoom(); err != nil {
		return err
	}
	bad.Raw = CutRaw(bad.Raw)
	b.cur.Bad = append(b.cur.Bad, bad)
	return nil
}

func (b *batcher) makeRoom() error {
	if b.cur.Len() < b.max {
		return nil
	}
	full := b.cur
	b.cur = Batch{}
	return b.emit(b.ctx, full)
}

// end hands over what is held, with advance as its position. It sends a
// batch with no records when advance moves the position, so that a unit
// with nothing in it (an empty file, an empty page) is still recorded.
func (b *batcher) end(advance Position) error {
	if b.cur.Len() == 0 && len(advance) == 0 {
		return nil
	}
	last := b.cur
	last.Advance = advance
	b.cur = Batch{}
	return b.emit(b.ctx, last)
}

// sniffValue types a text field as a CSV answer gives it, narrowest first:
// int64, float64, bool, else the string. An empty field is nil. Infinity
// and NaN spelled out stay strings: they are more often a name than a
// number.
func sniffValue(field string) any {
	if field == "" {
		return nil
	}
	if i, err := strconv.ParseInt(field, 10, 64); err == nil {
		return i
	}
	if f, err := strconv.ParseFloat(field, 64); err == nil && !math.IsInf(f, 0) && !math.IsNaN(f) {
		return f
	}
	switch strings.ToLower(field) {
	case "true":
		return true
	case "false":
		return false
	}
	return field
}
