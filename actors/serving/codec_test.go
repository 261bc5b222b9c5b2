package serving

import (
	"bytes"
	"math"
	"reflect"
	"testing"

	"github.com/vmihailenco/msgpack/v5"

	"github.com/kilnml/kiln/ml"
)

// The same structs without the hand-written methods: what msgpack's
// reflection writes and reads, i.e. what a node without codec.go sends.
type (
	reflectBatchRequest PredictBatchRequest
	reflectBatchReply   PredictBatchReply
)

func codecRequests() []*PredictBatchRequest {
	return []*PredictBatchRequest{
		{},
		{Items: []PredictRequest{}},
		{Items: []PredictRequest{{}, {Inputs: []ml.Tensor{}}}},
		{Items: []PredictRequest{
			{Inputs: []ml.Tensor{{Name: "input", Shape: []int{1, 4}, Data: []float64{5.1, 3.5, 1.4, 0.2}}}},
			{Inputs: []ml.Tensor{
				{Name: "a", Shape: []int{2, 2}, Data: []float64{math.NaN(), math.Inf(-1), -0.0, 1e300}},
				{Name: "", Shape: nil, Data: nil},
				{Name: "big", Shape: []int{1 << 40, -1, 0, 300, 70000}, Data: []float64{}},
			}},
		}},
	}
}

func codecReplies() []*PredictBatchReply {
	return []*PredictBatchReply{
		{},
		{Items: []PredictItemReply{}},
		{Items: []PredictItemReply{
			{Outputs: []ml.Tensor{{Name: "probabilities", Shape: []int{1, 3}, Data: []float64{0.1, 0.2, 0.7}}}},
			{Code: "invalid", Message: `input "x": shape [1 3] needs 3 values, got 2`},
			{Code: "internal"},
			{Message: "only a message"},
			{Outputs: []ml.Tensor{}},
		}},
	}
}

// TestCodec_BytesMatchReflection holds the hand-written encoders to the
// bytes msgpack's reflection writes, so a node running either reads the
// other's messages.
func TestCodec_BytesMatchReflection(t *testing.T) {
	for i, m := range codecRequests() {
		got, err := msgpack.Marshal(m)
		if err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
		want, err := msgpack.Marshal((*reflectBatchRequest)(m))
		if err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("request %d: custom encoding\n%x\nreflection\n%x", i, got, want)
		}
	}
	for i, m := range codecReplies() {
		got, err := msgpack.Marshal(m)
		if err != nil {
			t.Fatalf("reply %d: %v", i, err)
		}
		want, err := msgpack.Marshal((*reflectBatchReply)(m))
		if err != nil {
			t.Fatalf("reply %d: %v", i, err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("reply %d: custom encoding\n%x\nreflection\n%x", i, got, want)
		}
	}
}

// TestCodec_DecodesWhatReflectionDecodes reads each encoding back with both
// decoders and compares the results (NaN compared by its bits).
func TestCodec_DecodesWhatReflectionDecodes(t *testing.T) {
	for i, m := range codecRequests() {
		b, _ := msgpack.Marshal((*reflectBatchRequest)(m))
		var got PredictBatchRequest
		var want reflectBatchRequest
		if err := msgpack.Unmarshal(b, &got); err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
		if err := msgpack.Unmarshal(b, &want); err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
		if !sameEncoding(t, &got, (*PredictBatchRequest)(&want)) {
			t.Errorf("request %d: decoded %+v, reflection decoded %+v", i, got, want)
		}
	}
	for i, m := range codecReplies() {
		b, _ := msgpack.Marshal((*reflectBatchReply)(m))
		var got PredictBatchReply
		var want reflectBatchReply
		if err := msgpack.Unmarshal(b, &got); err != nil {
			t.Fatalf("reply %d: %v", i, err)
		}
		if err := msgpack.Unmarshal(b, &want); err != nil {
			t.Fatalf("reply %d: %v", i, err)
		}
		if !reflect.DeepEqual(got, PredictBatchReply(want)) {
			t.Errorf("reply %d: decoded %+v, reflection decoded %+v", i, got, want)
		}
	}
}

// sameEncoding compares two requests by their encodings, which tells NaNs
// apart by bits where DeepEqual never finds NaN equal to itself.
func sameEncoding(t *testing.T, a, b *PredictBatchRequest) bool {
	t.Helper()
	x, err1 := msgpack.Marshal((*reflectBatchRequest)(a))
	y, err2 := msgpack.Marshal((*reflectBatchRequest)(b))
	if err1 != nil || err2 != nil {
		t.Fatal(err1, err2)
	}
	return bytes.Equal(x, y)
}

// TestCodec_ReadsOtherEncodings: a field order, compact numbers, an unknown
// key and missing keys, as another msgpack writer may send them.
func TestCodec_ReadsOtherEncodings(t *testing.T) {
	var buf bytes.Buffer
	enc := msgpack.NewEncoder(&buf)
	enc.UseCompactInts(true)
	enc.UseCompactFloats(true)
	in := map[string]any{
		"extra": []any{1, "x", map[string]any{"y": nil}},
		"items": []any{
			map[string]any{"inputs": []any{
				map[string]any{"data": []any{int8(3), float32(0.5), uint64(7)}, "shape": []any{uint8(1), int16(3)}, "name": "x", "later": true},
			}},
			map[string]any{},
		},
	}
	if err := enc.Encode(in); err != nil {
		t.Fatal(err)
	}
	var got PredictBatchRequest
	if err := msgpack.Unmarshal(buf.Bytes(), &got); err != nil {
		t.Fatal(err)
	}
	want := PredictBatchRequest{Items: []PredictRequest{
		{Inputs: []ml.Tensor{{Name: "x", Shape: []int{1, 3}, Data: []float64{3, 0.5, 7}}}},
		{},
	}}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("decoded %+v, want %+v", got, want)
	}
}

// TestCodec_RefusesMalformed: truncated bodies and wrong types are errors
// that name the field, never a panic or a huge allocation.
func TestCodec_RefusesMalformed(t *testing.T) {
	full, _ := msgpack.Marshal(codecRequests()[3])
	for n := range len(full) {
		var m PredictBatchRequest
		if err := msgpack.Unmarshal(full[:n], &m); err == nil {
			t.Fatalf("a body cut to %d of %d bytes decoded", n, len(full))
		}
	}
	// An array claiming 2^32-1 elements, then nothing.
	huge := []byte{0x81, 0xa5, 'i', 't', 'e', 'm', 's', 0xdd, 0xff, 0xff, 0xff, 0xff}
	var m PredictBatchRequest
	if err := msgpack.Unmarshal(huge, &m); err == nil {
		t.Fatal("a truncated 4-billion-item array decoded")
	}
	wrong, _ := msgpack.Marshal(map[string]any{"items": []any{map[string]any{"inputs": []any{map[string]any{"data": "text"}}}}})
	err := msgpack.Unmarshal(wrong, &m)
	if err == nil || !bytes.Contains([]byte(err.Error()), []byte("items: inputs: data:")) {
		t.Fatalf("string data: got %v, want an error naming items: inputs: data", err)
	}
}

func FuzzDecodeBatch(f *testing.F) {
	for _, m := range codecRequests() {
		b, _ := msgpack.Marshal(m)
		f.Add(b)
	}
	for _, m := range codecReplies() {
		b, _ := msgpack.Marshal(m)
		f.Add(b)
	}
	// Fresh decoders, as the actors and transport packages decode: a pooled
	// one keeps what a lying length grew (see structs.Decode).
	decode := func(b []byte, v any) error { return msgpack.NewDecoder(bytes.NewReader(b)).Decode(v) }
	f.Fuzz(func(t *testing.T, b []byte) {
		var req PredictBatchRequest
		if decode(b, &req) == nil {
			// What decodes re-encodes to what reflection writes for it.
			again, err := msgpack.Marshal(&req)
			if err != nil {
				t.Fatal(err)
			}
			want, _ := msgpack.Marshal((*reflectBatchRequest)(&req))
			if !bytes.Equal(again, want) {
				t.Fatalf("re-encoding differs from reflection")
			}
		}
		var rep PredictBatchReply
		_ = decode(b, &rep)
	})
}

func BenchmarkCodec(b *testing.B) {
	req := &PredictBatchRequest{}
	for i := range 64 {
		d := make([]float64, 28)
		for j := range d {
			d[j] = float64(i*j) * 0.37
		}
		req.Items = append(req.Items, PredictRequest{Inputs: []ml.Tensor{{Name: "input", Shape: []int{1, 28}, Data: d}}})
	}
	body, _ := msgpack.Marshal(req)
	for _, c := range []struct {
		name string
		enc  any
		dec  func() any
	}{
		{"custom", req, func() any { return new(PredictBatchRequest) }},
		{"reflection", (*reflectBatchRequest)(req), func() any { return new(reflectBatchRequest) }},
	} {
		b.Run("encode/"+c.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := msgpack.Marshal(c.enc); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run("decode/"+c.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if err := msgpack.Unmarshal(body, c.dec()); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
