package data

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
)

// DecodeJSONRecord decodes a message that holds one JSON object into a
// Record, as the stream readers (Kafka, NATS) receive them:
//
//   - a number written as an integer that fits int64 is an int64; any other
//     number (a fraction, an exponent, an integer beyond int64) is a
//     float64, because JSON cannot say which a producer meant and Record
//     asks for int64 whenever the text is integral;
//   - strings, booleans and null are string, bool and nil;
//   - a nested object or array is its compact JSON text, a string the
//     source's schema may keep or reject.
//
// Anything but exactly one object (an array, a scalar, trailing data,
// invalid JSON, a number beyond float64) is an error whose text says why;
// the reader quarantines the message with it.
func DecodeJSONRecord(msg []byte) (Record, error) {
	msg = bytes.TrimSpace(msg)
	if len(msg) == 0 {
		return nil, errors.New("empty message, not a JSON object")
	}
	if msg[0] != '{' {
		return nil, fmt.Errorf("not a JSON object: starts with %q", msg[0])
	}
	// Unmarshal rejects trailing data and invalid JSON; of duplicate keys
	// the last wins, as in encoding/json.
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(msg, &fields); err != nil {
		return nil, fmt.Errorf("not a JSON object: %v", err)
	}
	rec := make(Record, len(fields))
	for k, raw := range fields {
		v, err := decodeJSONValue(raw)
		if err != nil {
			return nil, fmt.Errorf("field %q: %v", k, err)
		}
		rec[k] = v
	}
	return rec, nil
}

// decodeJSONValue types one valid JSON value as a Record holds it.
func decodeJSONValue(raw json.RawMessage) (any, error) {
	// Unmarshal has checked raw, and RawMessage holds a value without the
	// whitespace around it, so its first byte tells the kind.
	switch raw[0] {
	case 'n':
		return nil, nil
	case 't':
		return true, nil
	case 'f':
		return false, nil
	case '"':
		var s string
		err := json.Unmarshal(raw, &s)
		return s, err
	case '{', '[':
		var buf bytes.Buffer
		err := json.Compact(&buf, raw)
		return buf.String(), err
	}
	text := string(raw)
	if i, err := strconv.ParseInt(text, 10, 64); err == nil {
		return i, nil
	}
	f, err := strconv.ParseFloat(text, 64)
	if err != nil {
		// Valid JSON, so the only failure left is a number beyond float64
		// (1e400): keeping ±Inf would pass a value the producer never sent.
		return nil, fmt.Errorf("number %s is out of range", text)
	}
	return f, nil
}
