package data

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"
	"unicode/utf8"
)

func TestDecodeJSONRecord_Values(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want Record
	}{
		{"empty object", `{}`, Record{}},
		{"scalars", `{"s":"x","t":true,"f":false,"n":null}`,
			Record{"s": "x", "t": true, "f": false, "n": nil}},
		{"integers are int64", `{"a":1,"b":-42,"c":9223372036854775807}`,
			Record{"a": int64(1), "b": int64(-42), "c": int64(9223372036854775807)}},
		{"fractions and exponents are float64", `{"a":1.5,"b":2.0,"c":1e3}`,
			Record{"a": 1.5, "b": 2.0, "c": 1000.0}},
		{"integer beyond int64 is float64", `{"a":9223372036854775808}`,
			Record{"a": 9223372036854775808.0}},
		{"nested values are compact JSON text", `{"o": {"x": [1, 2]}, "a": [ "p" , {} ]}`,
			Record{"o": `{"x":[1,2]}`, "a": `["p",{}]`}},
		{"escapes are decoded", `{"s":"a\"b\u00e9\n"}`, Record{"s": "a\"bé\n"}},
		{"surrounding whitespace", " \n{\"a\":1}\n", Record{"a": int64(1)}},
		{"last duplicate wins", `{"a":1,"a":2}`, Record{"a": int64(2)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := DecodeJSONRecord([]byte(tt.in))
			if err != nil {
				t.Fatalf("DecodeJSONRecord(%q): %v", tt.in, err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("DecodeJSONRecord(%q) = %#v, want %#v", tt.in, got, tt.want)
			}
		})
	}
}

func TestDecodeJSONRecord_Errors(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want string // a part of the error text
	}{
		{"empty", ``, "empty message"},
		{"blank", " \n", "empty message"},
		{"array", `[{"a":1}]`, "not a JSON object"},
		{"scalar", `42`, "not a JSON object"},
		{"null", `null`, "not a JSON object"},
		{"string", `"{}"`, "not a JSON object"},
		{"truncated", `{"a":1`, "not a JSON object"},
		{"trailing data", `{"a":1} {"b":2}`, "not a JSON object"},
		{"not JSON", `{a:1}`, "not a JSON object"},
		{"number beyond float64", `{"a":1e400}`, `field "a": number 1e400 is out of range`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := DecodeJSONRecord([]byte(tt.in))
			if err == nil {
				t.Fatalf("DecodeJSONRecord(%q) = %v, want an error", tt.in, got)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("DecodeJSONRecord(%q) error %q does not say %q", tt.in, err, tt.want)
			}
		})
	}
}

// FuzzDecodeJSONRecord checks that any message either decodes to a record
// of Record's value types or fails, never panics, and that a decoded
// record holds what encoding/json sees in the message.
func FuzzDecodeJSONRecord(f *testing.F) {
	for _, seed := range []string{`{}`, `{"a":1,"b":"x","c":[1,{"d":null}],"e":1.5}`, `[]`, `{"a":1e400}`, `{"a":"\ud800"}`, ``} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, msg []byte) {
		rec, err := DecodeJSONRecord(msg)
		if err != nil {
			return
		}
		var generic map[string]any
		if err := json.Unmarshal(msg, &generic); err != nil {
			t.Fatalf("decoded %q, which encoding/json rejects: %v", msg, err)
		}
		if len(rec) != len(generic) {
			t.Fatalf("decoded %d fields from %q, encoding/json sees %d", len(rec), msg, len(generic))
		}
		for k, v := range rec {
			switch v := v.(type) {
			case nil, bool, int64, float64:
			case string:
				if !utf8.ValidString(v) {
					t.Fatalf("field %q of %q is not UTF-8", k, msg)
				}
			default:
				t.Fatalf("field %q of %q has type %T, not a Record value type", k, msg, v)
			}
		}
	})
}
