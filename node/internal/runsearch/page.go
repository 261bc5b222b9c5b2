package runsearch

import (
	"encoding/base64"
	"encoding/json"
	"strconv"
)

// Limits of max_results, MLflow's (SEARCH_MAX_RESULTS_DEFAULT and
// SEARCH_MAX_RESULTS_THRESHOLD).
const (
	DefaultMaxResults = 1000
	MaxResults        = 50000
)

// Page returns the page of items that token starts, at most maxResults long, and
// the token of the next page, "" when this page is the last. An empty token
// starts at the beginning. A token is opaque to clients, but is MLflow's:
// base64 of the JSON {"offset": n}. It holds only an offset, so items must
// be filtered and sorted the same way on every call, and records created
// between calls shift the pages, as in MLflow. The page shares items'
// backing array.
func Page[T any](items []T, token string, maxResults int) (page []T, next string, err error) {
	if maxResults < 1 || maxResults > MaxResults {
		return nil, "", errorf("invalid value %d for max_results: it must be between 1 and %d", maxResults, MaxResults)
	}
	offset, err := decodePageToken(token)
	if err != nil {
		return nil, "", err
	}
	if offset >= len(items) {
		return items[len(items):], "", nil
	}
	end := len(items)
	if maxResults < end-offset {
		end = offset + maxResults
		next = encodePageToken(end)
	}
	return items[offset:end], next, nil
}

// encodePageToken writes an offset as MLflow's Python writes it:
// base64(json.dumps({"offset": n})), blank after the colon included.
func encodePageToken(offset int) string {
	return base64.StdEncoding.EncodeToString([]byte(`{"offset": ` + strconv.Itoa(offset) + `}`))
}

// decodePageToken reads a token from encodePageToken, or from MLflow, which
// also writes the offset as a string at times. A token is taken in standard
// or URL-safe base64, padded or not, as clients mangle it in query strings.
// The offset of a valid token is positive: a first page has no token.
func decodePageToken(token string) (int, error) {
	if token == "" {
		return 0, nil
	}
	var raw []byte
	var err error
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.URLEncoding, base64.RawStdEncoding, base64.RawURLEncoding} {
		if raw, err = enc.DecodeString(token); err == nil {
			break
		}
	}
	if err != nil {
		return 0, errorf("invalid page token %s: could not base64-decode", quoteToken(token))
	}
	var body struct {
		Offset json.RawMessage `json:"offset"`
	}
	if err := json.Unmarshal(raw, &body); err != nil || body.Offset == nil {
		return 0, errorf("invalid page token %s: decoded value %s", quoteToken(token), quoteToken(string(raw)))
	}
	digits := string(body.Offset)
	var s string
	if json.Unmarshal(body.Offset, &s) == nil {
		digits = s
	}
	offset, err := strconv.Atoi(digits)
	if err != nil || offset < 1 {
		return 0, errorf("invalid page token %s: offset %s", quoteToken(token), quoteToken(string(body.Offset)))
	}
	return offset, nil
}
