package serving

import (
	"encoding/binary"
	"fmt"
	"math"

	"github.com/vmihailenco/msgpack/v5"
	"github.com/vmihailenco/msgpack/v5/msgpcode"

	"github.com/kilnml/kiln/ml"
)

// The batch messages a forwarding node's outbox sends are the only actor
// messages on the serving hot path, and msgpack's reflection spent more on
// them than the forwarding node spent on anything but HTTP. These methods
// write exactly the bytes reflection writes (a map per struct, keyed by the
// msgpack tags, omitempty honoured), so nodes running either encoder read
// each other; codec_test.go holds them to that. The decoders accept any
// valid encoding of the same fields and skip unknown keys, as reflection
// does.

// preallocMax bounds what a decoder allocates from a length it has not yet
// read the elements of, so a corrupt length cannot ask for gigabytes.
const preallocMax = 256

// EncodeMsgpack implements msgpack.CustomEncoder.
func (m *PredictBatchRequest) EncodeMsgpack(enc *msgpack.Encoder) error {
	return encodeItems(enc, m.Items, func(item *PredictRequest) error {
		if err := enc.EncodeMapLen(1); err != nil {
			return err
		}
		if err := enc.EncodeString("inputs"); err != nil {
			return err
		}
		return encodeTensors(enc, item.Inputs)
	})
}

// DecodeMsgpack implements msgpack.CustomDecoder.
func (m *PredictBatchRequest) DecodeMsgpack(dec *msgpack.Decoder) error {
	items, err := decodeItems(dec, func(item *PredictRequest) error {
		return decodeFields(dec, func(key string) error {
			if key != "inputs" {
				return dec.Skip()
			}
			var err error
			item.Inputs, err = decodeTensors(dec)
			return err
		})
	})
	*m = PredictBatchRequest{Items: items}
	return err
}

// EncodeMsgpack implements msgpack.CustomEncoder.
func (m *PredictBatchReply) EncodeMsgpack(enc *msgpack.Encoder) error {
	return encodeItems(enc, m.Items, func(r *PredictItemReply) error {
		n := 1
		if r.Code != "" {
			n++
		}
		if r.Message != "" {
			n++
		}
		if err := enc.EncodeMapLen(n); err != nil {
			return err
		}
		if err := enc.EncodeString("outputs"); err != nil {
			return err
		}
		if err := encodeTensors(enc, r.Outputs); err != nil {
			return err
		}
		for _, kv := range [...][2]string{{"code", r.Code}, {"message", r.Message}} {
			if kv[1] == "" {
				continue
			}
			if err := enc.EncodeString(kv[0]); err != nil {
				return err
			}
			if err := enc.EncodeString(kv[1]); err != nil {
				return err
			}
		}
		return nil
	})
}

// DecodeMsgpack implements msgpack.CustomDecoder.
func (m *PredictBatchReply) DecodeMsgpack(dec *msgpack.Decoder) error {
	items, err := decodeItems(dec, func(r *PredictItemReply) error {
		return decodeFields(dec, func(key string) error {
			var err error
			switch key {
			case "outputs":
				r.Outputs, err = decodeTensors(dec)
			case "code":
				r.Code, err = dec.DecodeString()
			case "message":
				r.Message, err = dec.DecodeString()
			default:
				err = dec.Skip()
			}
			return err
		})
	})
	*m = PredictBatchReply{Items: items}
	return err
}

// encodeItems writes {"items": [...]}, each item by each.
func encodeItems[T any](enc *msgpack.Encoder, items []T, each func(*T) error) error {
	if err := enc.EncodeMapLen(1); err != nil {
		return err
	}
	if err := enc.EncodeString("items"); err != nil {
		return err
	}
	if items == nil {
		return enc.EncodeNil()
	}
	if err := enc.EncodeArrayLen(len(items)); err != nil {
		return err
	}
	for i := range items {
		if err := each(&items[i]); err != nil {
			return err
		}
	}
	return nil
}

// decodeItems reads {"items": [...]}, each item by each; other keys are
// skipped, and a missing or nil list reads as nil.
func decodeItems[T any](dec *msgpack.Decoder, each func(*T) error) ([]T, error) {
	var items []T
	err := decodeFields(dec, func(key string) error {
		if key != "items" {
			return dec.Skip()
		}
		n, err := dec.DecodeArrayLen()
		if err != nil || n < 0 {
			return err
		}
		items = make([]T, 0, min(n, preallocMax))
		for range n {
			var item T
			if err := each(&item); err != nil {
				return err
			}
			items = append(items, item)
		}
		return nil
	})
	return items, err
}

// encodeTensors writes ts as reflection writes a []ml.Tensor.
func encodeTensors(enc *msgpack.Encoder, ts []ml.Tensor) error {
	if ts == nil {
		return enc.EncodeNil()
	}
	if err := enc.EncodeArrayLen(len(ts)); err != nil {
		return err
	}
	for i := range ts {
		t := &ts[i]
		if err := enc.EncodeMapLen(3); err != nil {
			return err
		}
		if err := enc.EncodeString("name"); err != nil {
			return err
		}
		if err := enc.EncodeString(t.Name); err != nil {
			return err
		}
		if err := enc.EncodeString("shape"); err != nil {
			return err
		}
		if err := encodeInts(enc, t.Shape); err != nil {
			return err
		}
		if err := enc.EncodeString("data"); err != nil {
			return err
		}
		if err := encodeFloats(enc, t.Data); err != nil {
			return err
		}
	}
	return nil
}

func encodeInts(enc *msgpack.Encoder, xs []int) error {
	if xs == nil {
		return enc.EncodeNil()
	}
	if err := enc.EncodeArrayLen(len(xs)); err != nil {
		return err
	}
	for _, x := range xs {
		if err := enc.EncodeInt(int64(x)); err != nil {
			return err
		}
	}
	return nil
}

func encodeFloats(enc *msgpack.Encoder, xs []float64) error {
	if xs == nil {
		return enc.EncodeNil()
	}
	if err := enc.EncodeArrayLen(len(xs)); err != nil {
		return err
	}
	// One write of 9 bytes a value (the float 64 code, then the bits big
	// endian), as EncodeFloat64 writes each, without a call per value.
	buf := make([]byte, 9*len(xs))
	for i, x := range xs {
		buf[9*i] = msgpcode.Double
		binary.BigEndian.PutUint64(buf[9*i+1:], math.Float64bits(x))
	}
	_, err := enc.Writer().Write(buf)
	return err
}

// decodeTensors reads a []ml.Tensor; nil stays nil.
func decodeTensors(dec *msgpack.Decoder) ([]ml.Tensor, error) {
	n, err := dec.DecodeArrayLen()
	if err != nil || n < 0 {
		return nil, err
	}
	ts := make([]ml.Tensor, 0, min(n, preallocMax))
	for range n {
		var t ml.Tensor
		err := decodeFields(dec, func(key string) error {
			var err error
			switch key {
			case "name":
				t.Name, err = dec.DecodeString()
			case "shape":
				t.Shape, err = decodeInts(dec)
			case "data":
				t.Data, err = decodeFloats(dec)
			default:
				err = dec.Skip()
			}
			return err
		})
		if err != nil {
			return nil, err
		}
		ts = append(ts, t)
	}
	return ts, nil
}

func decodeInts(dec *msgpack.Decoder) ([]int, error) {
	n, err := dec.DecodeArrayLen()
	if err != nil || n < 0 {
		return nil, err
	}
	xs := make([]int, 0, min(n, preallocMax))
	for range n {
		x, err := dec.DecodeInt()
		if err != nil {
			return nil, err
		}
		xs = append(xs, x)
	}
	return xs, nil
}

func decodeFloats(dec *msgpack.Decoder) ([]float64, error) {
	n, err := dec.DecodeArrayLen()
	if err != nil || n < 0 {
		return nil, err
	}
	xs := make([]float64, 0, min(n, preallocMax))
	var raw [9]byte
	for range n {
		// What encodeFloats writes is read directly; anything else (a
		// compact float, an int) through the general decoder.
		if c, err := dec.PeekCode(); err == nil && c == msgpcode.Double {
			if err := dec.ReadFull(raw[:]); err != nil {
				return nil, err
			}
			xs = append(xs, math.Float64frombits(binary.BigEndian.Uint64(raw[1:])))
			continue
		}
		x, err := dec.DecodeFloat64()
		if err != nil {
			return nil, err
		}
		xs = append(xs, x)
	}
	return xs, nil
}

// decodeFields reads a map (nil reads as empty), calling field with each
// string key; field must consume the value.
func decodeFields(dec *msgpack.Decoder, field func(key string) error) error {
	n, err := dec.DecodeMapLen()
	if err != nil {
		return err
	}
	for range n {
		key, err := dec.DecodeString()
		if err != nil {
			return fmt.Errorf("map key: %w", err)
		}
		if err := field(key); err != nil {
			return fmt.Errorf("%s: %w", key, err)
		}
	}
	return nil
}
