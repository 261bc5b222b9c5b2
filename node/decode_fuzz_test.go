package node

import (
	"strings"
	"testing"

	"github.com/kilnml/kiln/raftfsm/structs"
)

// FuzzDecodeModelRequests feeds arbitrary bodies through the HTTP JSON decoding
// and validation of model writes: it must never panic, and every failure must be a
// coded client error (400 or 413), never an internal one.
func FuzzDecodeModelRequests(f *testing.F) {
	seeds := []string{
		`{"name":"iris","owner":"ml","tags":{"a":"b"}}`,
		`{"description":"x","tags":{"k":null,"j":"v"}}`,
		`{"name":`, `[]`, `null`, `""`, `{"tags":{"":"x"}}`, `{"name":"a"} {}`,
		`{"tags":{"a":1}}`, `{"unknown":true}`, "\xff\xfe", `{"name":"` + strings.Repeat("a", 100) + `"}`,
	}
	for _, s := range seeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		var create modelCreateRequest
		if err := decodeJSON(strings.NewReader(string(body)), &create); err != nil {
			checkClientError(t, err)
		} else {
			m := structs.Model{Name: create.Name, Description: create.Description, Owner: create.Owner, Tags: create.Tags}
			if err := m.Validate(); err != nil {
				checkClientError(t, err)
			}
		}
		var patch modelPatchRequest
		if err := decodeJSON(strings.NewReader(string(body)), &patch); err != nil {
			checkClientError(t, err)
			return
		}
		cmd := structs.ModelUpdateRequest{Name: "m", Description: patch.Description, Owner: patch.Owner, Tags: patch.Tags}
		if err := cmd.Validate(); err != nil {
			checkClientError(t, err)
			return
		}
		m := structs.Model{Name: "m"}
		cmd.Apply(&m)
	})
}

// FuzzDecodeFaultRequest covers the debug endpoint's body the same way.
func FuzzDecodeFaultRequest(f *testing.F) {
	f.Add([]byte(`{"host":"127.0.0.1","drop":true,"delay_ms":5}`))
	f.Add([]byte(`{"delay_ms":-1}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		var req faultRequest
		if err := decodeJSON(strings.NewReader(string(body)), &req); err != nil {
			checkClientError(t, err)
		}
	})
}

func checkClientError(t *testing.T, err error) {
	t.Helper()
	code := structs.ErrorCode(err)
	if code != structs.CodeInvalid && code != structs.CodeTooLarge {
		t.Fatalf("decode error %q has code %q, want a client error", err, code)
	}
	if s := httpStatus(code); s != 400 && s != 413 {
		t.Fatalf("status %d for %q", s, err)
	}
}
