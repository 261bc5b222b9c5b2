package tensorjson

import (
	"strconv"

	"github.com/kilnml/kiln/ml"
)

// ParseFast fills r from body when body is a :predict request of the common
// form, and reports whether it did: one object whose keys are among
// instances (rows of numbers, as FastRows reads them), version (a plain
// unsigned integer), alias, key and id (strings of printable ASCII without
// escapes), each at most once. The instances are parsed here, once, and kept
// for Tensors. Anything else returns false with r untouched, and the caller
// decodes body with encoding/json, which handles every other form and words
// every error; for what ParseFast accepts the two give the same Request
// (FuzzParseFast holds them to it). On a forwarding node the generic decoding
// of a one-row request cost more than everything else the node did with it
// but HTTP.
func (r *Request) ParseFast(body []byte) bool {
	var out Request
	seen := 0
	i := skipSpace(body, 0)
	if i >= len(body) || body[i] != '{' {
		return false
	}
	i = skipSpace(body, i+1)
	if i < len(body) && body[i] == '}' {
		return false // no input: encoding/json's path names what is missing
	}
	for {
		key, end, ok := plainString(body, i)
		if !ok {
			return false
		}
		i = skipSpace(body, end)
		if i >= len(body) || body[i] != ':' {
			return false
		}
		i = skipSpace(body, i+1)
		var bit int
		switch key {
		case "instances":
			bit = 1
			t, end, ok := fastRowsAt(body, i)
			if !ok {
				return false
			}
			out.Instances, out.rows = body[i:end], &t
			i = end
		case "version":
			bit = 2
			j := i
			for j < len(body) && body[j] >= '0' && body[j] <= '9' {
				j++
			}
			if j == i || body[i] == '0' && j > i+1 || j < len(body) && isNumberByte(body[j]) {
				return false
			}
			v, err := strconv.ParseUint(string(body[i:j]), 10, 64)
			if err != nil {
				return false
			}
			out.Version, i = v, j
		case "alias", "key", "id":
			dst, b := &out.Alias, 4
			if key == "key" {
				dst, b = &out.Key, 8
			} else if key == "id" {
				dst, b = &out.ID, 16
			}
			v, end, ok := plainString(body, i)
			if !ok {
				return false
			}
			*dst, bit, i = v, b, end
		default:
			return false
		}
		if seen&bit != 0 {
			return false // a repeated key: encoding/json's rule decides
		}
		seen |= bit
		i = skipSpace(body, i)
		if i >= len(body) {
			return false
		}
		if body[i] == ',' {
			i = skipSpace(body, i+1)
			continue
		}
		if body[i] != '}' || skipSpace(body, i+1) != len(body) {
			return false
		}
		*r = out
		return true
	}
}

// plainString reads a JSON string at b[i] made only of printable ASCII
// without escapes; end is just past its closing quote.
func plainString(b []byte, i int) (s string, end int, ok bool) {
	if i >= len(b) || b[i] != '"' {
		return "", 0, false
	}
	for j := i + 1; j < len(b); j++ {
		switch c := b[j]; {
		case c == '"':
			return string(b[i+1 : j]), j + 1, true
		case c == '\\' || c < 0x20 || c >= 0x7f:
			return "", 0, false
		}
	}
	return "", 0, false
}

// rowsFor returns the rows ParseFast read, named for schema s, when the
// model takes at most one input.
func (r *Request) rowsFor(s int) (ml.Tensor, bool) {
	if r.rows == nil || s > 1 {
		return ml.Tensor{}, false
	}
	return *r.rows, true
}
