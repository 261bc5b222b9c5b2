package tensorjson

import (
	"bytes"
	"encoding/json"
	"slices"
	"testing"
)

var parseFastSeeds = []string{
	`{"instances":[[5.1,3.5,1.4,0.2]]}`,
	` { "id" : "r-1", "instances" : [[1, null], [2, 3]] , "version": 2, "alias":"prod", "key":"u7" } `,
	`{"instances":[[1]],"version":0}`,
	// Everything below takes encoding/json's path.
	`{}`, `{"instances":[[1]],"instances":[[2]]}`, `{"instances":[[1]],"version":01}`,
	`{"instances":[[1]],"version":-1}`, `{"instances":[[1]],"version":1.5}`, `{"instances":[[1]],"version":1e2}`,
	`{"instances":[[1]],"version":18446744073709551616}`, `{"instances":[[1]],"id":"a\"b"}`,
	`{"instances":[[1]],"id":"é"}`, `{"instances":[[1]],"id":null}`, `{"Instances":[[1]]}`,
	`{"instances":[{"a":1}]}`, `{"inputs":{"x":[1]}}`, `{"instances":[[1]]} x`, `{"instances":[[1]],}`,
	`{"instances":[[1]]`, `["instances"]`, `{"entities":{"user":1}}`,
}

// TestParseFast_Accepts pins what the fast path takes and what it reads.
func TestParseFast_Accepts(t *testing.T) {
	var r Request
	if !r.ParseFast([]byte(parseFastSeeds[1])) {
		t.Fatalf("ParseFast refused %s", parseFastSeeds[1])
	}
	if string(r.Instances) != `[[1, null], [2, 3]]` || r.Version != 2 || r.Alias != "prod" || r.Key != "u7" || r.ID != "r-1" {
		t.Fatalf("ParseFast read %+v", r)
	}
	rows, ok := r.rowsFor(1)
	if !ok || !slices.Equal(rows.Shape, []int{2, 2}) || rows.Data[0] != 1 || rows.Data[3] != 3 {
		t.Fatalf("rows %+v %v", rows, ok)
	}
	if _, ok := r.rowsFor(2); ok {
		t.Fatal("rows were offered for a model with two inputs")
	}
	for _, s := range parseFastSeeds[3:] {
		r := Request{ID: "untouched"}
		if r.ParseFast([]byte(s)) {
			t.Errorf("ParseFast accepted %s", s)
		}
		if r.ID != "untouched" {
			t.Errorf("ParseFast(%s) changed the request it refused", s)
		}
	}
}

// FuzzParseFast holds the fast path to encoding/json's reading (with unknown
// fields refused, as the endpoint decodes) wherever it accepts a body.
func FuzzParseFast(f *testing.F) {
	for _, s := range parseFastSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		var fast Request
		if !fast.ParseFast(b) {
			return
		}
		var slow Request
		dec := json.NewDecoder(bytes.NewReader(b))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&slow); err != nil {
			t.Fatalf("ParseFast accepted %q, encoding/json refused it: %v", b, err)
		}
		if _, err := dec.Token(); err == nil {
			t.Fatalf("ParseFast accepted %q with data after the object", b)
		}
		if !bytes.Equal(fast.Instances, slow.Instances) || fast.Version != slow.Version ||
			fast.Alias != slow.Alias || fast.Key != slow.Key || fast.ID != slow.ID {
			t.Fatalf("ParseFast(%q) = %+v, encoding/json = %+v", b, fast, slow)
		}
		rows, ok := fast.rowsFor(1)
		want, wok := FastRows(slow.Instances)
		if ok != wok || ok && (!slices.Equal(rows.Shape, want.Shape) || !sameData(rows.Data, want.Data)) {
			t.Fatalf("ParseFast(%q) rows %+v, FastRows %+v", b, rows, want)
		}
	})
}
