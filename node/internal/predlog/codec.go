package predlog

import (
	"encoding/binary"
	"errors"
	"math"
	"time"

	"github.com/kilnml/kiln/ml"
)

var errCorrupt = errors.New("predlog: corrupt record")

// encodeRecord writes r's value: version, latency in microseconds and ID,
// then the inputs and the outputs (see doc.go).
func encodeRecord(r *Record) []byte {
	n := 32 + len(r.ID)
	for _, ts := range [][]ml.Tensor{r.Inputs, r.Outputs} {
		for _, t := range ts {
			n += 16 + len(t.Name) + 10*len(t.Shape) + 8*len(t.Data)
		}
	}
	b := make([]byte, 0, n)
	b = binary.AppendUvarint(b, r.Version)
	b = binary.AppendUvarint(b, uint64(max(r.Latency/time.Microsecond, 0)))
	b = binary.AppendUvarint(b, uint64(len(r.ID)))
	b = append(b, r.ID...)
	for _, ts := range [][]ml.Tensor{r.Inputs, r.Outputs} {
		b = binary.AppendUvarint(b, uint64(len(ts)))
		for _, t := range ts {
			b = binary.AppendUvarint(b, uint64(len(t.Name)))
			b = append(b, t.Name...)
			b = binary.AppendUvarint(b, uint64(len(t.Shape)))
			for _, d := range t.Shape {
				b = binary.AppendVarint(b, int64(d))
			}
			b = binary.AppendUvarint(b, uint64(len(t.Data)))
			for _, x := range t.Data {
				b = binary.LittleEndian.AppendUint64(b, math.Float64bits(x))
			}
		}
	}
	return b
}

// reader walks an encoded record.
type reader struct {
	b   []byte
	err error
}

func (r *reader) uvarint() uint64 {
	if r.err != nil {
		return 0
	}
	v, n := binary.Uvarint(r.b)
	if n <= 0 {
		r.err = errCorrupt
		return 0
	}
	r.b = r.b[n:]
	return v
}

func (r *reader) varint() int64 {
	if r.err != nil {
		return 0
	}
	v, n := binary.Varint(r.b)
	if n <= 0 {
		r.err = errCorrupt
		return 0
	}
	r.b = r.b[n:]
	return v
}

func (r *reader) bytes(n uint64) []byte {
	if r.err != nil {
		return nil
	}
	if uint64(len(r.b)) < n {
		r.err = errCorrupt
		return nil
	}
	out := r.b[:n]
	r.b = r.b[n:]
	return out
}

// tensorHead reads a tensor's name and shape, and returns its values' raw
// bytes.
func (r *reader) tensorHead(shape []int) (name []byte, dims []int, raw []byte) {
	name = r.bytes(r.uvarint())
	nd := r.uvarint()
	if nd > 16 {
		r.err = errCorrupt
		return nil, nil, nil
	}
	dims = shape[:0]
	for range nd {
		dims = append(dims, int(r.varint()))
	}
	n := r.uvarint()
	if n > uint64(len(r.b))/8 {
		r.err = errCorrupt
		return nil, nil, nil
	}
	return name, dims, r.bytes(8 * n)
}

func decodeRecord(val []byte) (*Record, error) {
	r := &reader{b: val}
	rec := &Record{Version: r.uvarint(), Latency: time.Duration(r.uvarint()) * time.Microsecond}
	rec.ID = string(r.bytes(r.uvarint()))
	for k := range 2 {
		n := r.uvarint()
		if n > 1024 {
			return nil, errCorrupt
		}
		ts := make([]ml.Tensor, 0, n)
		for range n {
			name, dims, raw := r.tensorHead(nil)
			if r.err != nil {
				return nil, r.err
			}
			ts = append(ts, ml.Tensor{Name: string(name), Shape: append([]int(nil), dims...), Data: decodeFloats(raw)})
		}
		if k == 0 {
			rec.Inputs = ts
		} else {
			rec.Outputs = ts
		}
	}
	return rec, r.err
}

// rows is one record's values by row: In holds Batch rows of InWidth values
// (every input tensor's values of the row, in order), Out the first
// output's Batch rows of OutWidth.
type rows struct {
	Batch, InWidth, OutWidth int
	In, Out                  []float64
	shape                    []int
	raws                     [][]byte
}

// decodeRows reads val's values into rs, reusing its buffers.
func decodeRows(val []byte, rs *rows) error {
	r := &reader{b: val}
	r.uvarint()
	r.uvarint()
	r.bytes(r.uvarint())
	rs.Batch, rs.InWidth, rs.OutWidth = -1, 0, 0
	rs.In, rs.Out, rs.raws = rs.In[:0], rs.Out[:0], rs.raws[:0]
	var widths []int
	nin := r.uvarint()
	for range nin {
		_, dims, raw := r.tensorHead(rs.shape)
		rs.shape = dims
		if r.err != nil {
			return r.err
		}
		batch := 1
		if len(dims) > 0 {
			batch = dims[0]
		}
		// Every row has a value: a batch larger than the values is not one
		// this log wrote (and would only spin the loops below).
		if rs.Batch >= 0 && batch != rs.Batch || batch < 0 || batch > max(len(raw)/8, 1) {
			return errCorrupt
		}
		rs.Batch = batch
		w := 0
		if batch > 0 {
			w = len(raw) / 8 / batch
		}
		widths = append(widths, w)
		rs.InWidth += w
		rs.raws = append(rs.raws, raw)
	}
	if rs.Batch <= 0 || rs.InWidth == 0 {
		// No inputs, or inputs of no values: no rows to read.
		rs.Batch, rs.InWidth = 0, 0
		return r.err
	}
	for i := range rs.Batch {
		for t, raw := range rs.raws {
			w := widths[t]
			for j := range w {
				rs.In = append(rs.In, math.Float64frombits(binary.LittleEndian.Uint64(raw[8*(i*w+j):])))
			}
		}
	}
	if nout := r.uvarint(); nout > 0 {
		_, _, raw := r.tensorHead(rs.shape)
		if r.err != nil {
			return r.err
		}
		rs.OutWidth = len(raw) / 8 / rs.Batch
		for k := range rs.Batch * rs.OutWidth {
			rs.Out = append(rs.Out, math.Float64frombits(binary.LittleEndian.Uint64(raw[8*k:])))
		}
	}
	return r.err
}
