package tensorjson

import (
	"encoding/json"
	"testing"

	"github.com/kilnml/kiln/ml"
	"github.com/kilnml/kiln/raftfsm/structs"
)

// The prediction decoders take request bodies from the network. Each fuzz
// target feeds arbitrary JSON through one of them against fixed schemas: it
// must never panic, every failure must be a client error, and every success
// must be tensors whose data matches their shape.

var fuzzSchemas = []*structs.Schema{tabularSchema, unnamedTabularSchema, singleFeatureSchema, imageSchema, twoInputSchema}

// checkDecoded fails unless tensors are well formed, one per model input.
func checkDecoded(t *testing.T, s *structs.Schema, tensors []ml.Tensor) {
	t.Helper()
	if want := max(len(s.Inputs), 1); len(tensors) != want {
		t.Fatalf("%d tensors for a model with %d inputs", len(tensors), len(s.Inputs))
	}
	checkTensor := func(x ml.Tensor) {
		t.Helper()
		if err := x.Check(); err != nil {
			t.Fatalf("decoded tensor fails Check: %v", err)
		}
		// Check's product of dimensions can wrap; count without wrapping.
		if n, ok := ShapeElements(x.Shape); !ok || n != len(x.Data) {
			t.Fatalf("decoded tensor of shape %v holds %d values", x.Shape, len(x.Data))
		}
	}
	for _, x := range tensors {
		checkTensor(x)
	}
	NormalizeTabular(tensors, s)
	for _, x := range tensors {
		checkTensor(x)
	}
}

var instanceSeeds = []string{
	`[[1,2,3],[4,5,6]]`, `[1,2,3]`, `[[[1,2],[3,4]],[[5,6],[7,8]]]`, `[[1,2,3],[4,5]]`,
	`[{"a":1,"c":3},{"b":2}]`, `[{"x":[1,2],"y":3},{"x":[4,5],"y":6}]`, `[{"x":[1,2],"y":3},{"x":[4,5]}]`,
	`[{"z":1}]`, `[{"a":1},[1]]`, `[[null,true,"x"]]`, `[]`, `[[]]`, `[[[]]]`, `null`, `{}`, `"x"`, `1e309`,
	`[[1e308,-1e308,5e-324]]`, `[{"input":[1,2,3]}]`, `[{"img":[[1,2],[3,4]]}]`, `[[1,2,3],4]`,
	claimHugeShape(),
}

func FuzzTensorsFromInstances(f *testing.F) {
	for _, s := range instanceSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		for _, s := range fuzzSchemas {
			tensors, err := FromInstances(json.RawMessage(body), s)
			if err != nil {
				checkClientError(t, err)
				continue
			}
			checkDecoded(t, s, tensors)
		}
	})
}

func FuzzTensorsFromColumns(f *testing.F) {
	for _, s := range []string{
		`{"a":[1,2],"b":[3,4],"c":[5,null]}`, `{"a":[],"b":[],"c":[]}`, `{"a":[1],"b":[2]}`,
		`{"a":[1,2],"b":[3],"c":[5,6]}`, `{"a":1,"b":[2],"c":[3]}`, `{"input":[[1,2,3]]}`,
		`{"x":[[1,2],[4,5]],"y":[3,6]}`, `{"x":[[1,2],[3]],"y":[1,2]}`, `{"img":[[[1,2],[3,4]]]}`,
		`{"x":[],"y":[]}`, `{}`, `{"a":[true,"x",{}]}`, `{"input":[]}`, `{"input":[1,2,3]}`,
		`{"img":` + claimHugeShape() + `}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		var cols map[string]json.RawMessage
		if json.Unmarshal(body, &cols) != nil {
			return // the HTTP layer refuses it before the decoder sees it
		}
		for _, s := range fuzzSchemas {
			tensors, err := FromColumns(cols, s)
			if err != nil {
				checkClientError(t, err)
				continue
			}
			checkDecoded(t, s, tensors)
		}
	})
}

func FuzzV2InputTensor(f *testing.F) {
	for _, s := range []string{
		`{"name":"input","shape":[2,3],"datatype":"FP64","data":[1,2,3,4,5,6]}`,
		`{"name":"input","shape":[2,3],"datatype":"FP32","data":[[1,2,3],[4,5,6]]}`,
		`{"name":"y","shape":[2],"datatype":"BOOL","data":[true,false]}`,
		`{"name":"input","shape":[2,3],"datatype":"FP64","data":[1,2,3,4,5]}`,
		`{"name":"input","shape":[1],"datatype":"BYTES","data":["abc"]}`,
		`{"name":"input","shape":[],"datatype":"FP64","data":[1]}`,
		`{"name":"input","shape":[-1,3],"datatype":"FP64","data":[1,2,3]}`,
		`{"name":"input","shape":[4611686018427387904,28],"datatype":"FP64","data":[]}`,
		`{"name":"input","shape":[3037000500,3037000500,2],"datatype":"FP64","data":[1]}`,
		`{"name":"input","shape":[0,9223372036854775807],"datatype":"FP64","data":[]}`,
		`{"name":"input","shape":[1],"datatype":"FP64","data":1}`,
		`{"name":"z","shape":[1],"datatype":"INT8","data":[1]}`,
		`{"shape":[1],"datatype":"UINT64","data":[null]}`,
		`{}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		var in V2Input
		if json.Unmarshal(body, &in) != nil {
			return // the HTTP layer refuses it before the decoder sees it
		}
		for _, s := range fuzzSchemas {
			x, err := FromV2(0, in, s)
			if err != nil {
				checkClientError(t, err)
				continue
			}
			if err := x.Check(); err != nil {
				t.Fatalf("decoded tensor fails Check: %v", err)
			}
			if n, ok := ShapeElements(x.Shape); !ok || n != len(x.Data) {
				t.Fatalf("decoded tensor of shape %v holds %d values", x.Shape, len(x.Data))
			}
		}
	})
}

// checkClientError fails unless err is a client's mistake: 400 or 413.
func checkClientError(t *testing.T, err error) {
	t.Helper()
	if code := structs.ErrorCode(err); code != structs.CodeInvalid && code != structs.CodeTooLarge {
		t.Fatalf("decode error %q has code %q, want a client error", err, code)
	}
}
