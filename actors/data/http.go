package data

import (
	"bufio"
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/kilnml/kiln/raftfsm/structs"
)

// Limits of an HTTP source.
const (
	// maxHTTPBody bounds one answer: a JSON answer is held whole in memory.
	maxHTTPBody = 256 << 20
	// maxHTTPLine bounds one line of an ndjson or csv answer.
	maxHTTPLine = 16 << 20
	// errorBodyBytes is how much of a failed answer's body its error shows.
	errorBodyBytes = 512
	// Pagination defaults, as SourceSpec.Normalize sets them, for a spec
	// that was not normalized.
	defaultHTTPStartPage = 1
	defaultHTTPMaxPages  = 1000
)

// httpReader GETs an URL, page after page when the source is paginated.
type httpReader struct {
	name   string
	spec   structs.HTTPSource
	url    *url.URL
	token  string
	client *http.Client
	// maxBody bounds an answer's body; a field so that tests can lower it.
	maxBody int64
}

// NewHTTP returns the reader of an HTTP source. The token is read from its
// file or variable now, so that a missing one fails the source at once.
// client nil means http.DefaultClient.
func NewHTTP(name string, spec *structs.HTTPSource, env Env, client *http.Client) (Reader, error) {
	if spec == nil {
		return nil, fmt.Errorf("data: http source %q: no spec", name)
	}
	u, err := url.Parse(spec.URL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("data: http source %q: url is not an http or https URL", name)
	}
	token, err := env.Resolve("http.token", spec.Token)
	if err != nil {
		return nil, fmt.Errorf("data: http source %q: %w", name, err)
	}
	if client == nil {
		client = http.DefaultClient
	}
	r := &httpReader{name: name, spec: *spec, url: u, token: token, client: client, maxBody: maxHTTPBody}
	if r.spec.Format == "" {
		r.spec.Format = "json"
	}
	switch r.spec.Format {
	case "json", "ndjson", "csv":
	default:
		return nil, fmt.Errorf("data: http source %q: format %q: use json, ndjson or csv", name, r.spec.Format)
	}
	if p := spec.Pagination; p != nil {
		pg := *p
		if pg.Start == 0 {
			pg.Start = defaultHTTPStartPage
		}
		if pg.MaxPages == 0 {
			pg.MaxPages = defaultHTTPMaxPages
		}
		r.spec.Pagination = &pg
		if pg.Type == structs.PaginationCursor && (r.spec.Format != "json" || r.spec.RecordsField == "" || pg.CursorField == "") {
			return nil, fmt.Errorf("data: http source %q: cursor pagination needs format json, records_field and cursor_field", name)
		}
	}
	return r, nil
}

// page is one answer, decoded: its records in order, good and bad.
type page struct {
	entries []entry
	// cursor is the next page's cursor (cursor pagination); "" when the
	// answer gave none.
	cursor string
}

// entry is a good record or, when bad is set, a bad one.
type entry struct {
	rec Record
	bad *BadRecord
}

func (p *page) len() int { return len(p.entries) }

func (p *page) add(rec Record) { p.entries = append(p.entries, entry{rec: rec}) }

func (p *page) addBad(offset, reason, raw string) {
	p.entries = append(p.entries, entry{bad: &BadRecord{Offset: offset, Reason: reason, Raw: raw}})
}

// Read GETs the URL, or its pages in turn.
//
// Only cursor pagination moves the position (see readCursor). Without
// pagination, and with page pagination, the API is a snapshot: page
// numbers start again at every run, and every run reads everything the API
// answers, records read by earlier runs included. The registry stores the
// rows of such a source deduplicated (a row identical to one stored for
// the same entity and timestamp is stored once), so a snapshot read again
// adds only what changed.
func (r *httpReader) Read(ctx context.Context, from Position, maxBatch int, emit Emit) error {
	u := &unitEmit{emit: emit}
	b, err := newBatcher(ctx, maxBatch, u.Emit)
	if err != nil {
		return err
	}
	p := r.spec.Pagination
	switch {
	case p == nil:
		pg, err := r.get(ctx, r.url, 1)
		if err != nil {
			return err
		}
		return r.hand(b, pg.entries, nil)
	case p.Type == structs.PaginationPage:
		for n := range p.MaxPages {
			number := p.Start + n
			pg, err := r.get(ctx, r.withParam(p.Param, strconv.Itoa(number)), number)
			if err != nil {
				return err
			}
			if pg.len() == 0 {
				break
			}
			if err := r.hand(b, pg.entries, nil); err != nil {
				return err
			}
		}
		return nil
	case p.Type == structs.PaginationCursor:
		return r.readCursor(ctx, b, u, from)
	}
	return fmt.Errorf("data: http source %q: pagination type %q: use page or cursor", r.name, p.Type)
}

// Position keys of cursor pagination.
const (
	// httpCursorKey holds the cursor that fetches the page being read; ""
	// (or no key) is the first page, fetched without a cursor.
	httpCursorKey = ""
	// httpSkipKey holds how many of that page's records, good and bad,
	// are handed over; no key is 0.
	httpSkipKey = "skip"
)

// readCursor follows cursors from the page of from's cursor until an
// answer gives none.
//
// The position is the cursor that fetched the page being read and the
// number of its records handed over: every batch moves both, and the batch
// that ends a page moves them to the next page's cursor and 0. A read
// resumes by fetching its cursor's page again and skipping that many
// records, so a read stopped inside a page reads none of it twice. The last
// page, which gives no next cursor, stays the position once read: the next
// run fetches it again and hands over only the records past those read, so
// an append-only feed whose last page grows yields its new records once. A
// page answering with fewer records than the position skips (an API that
// is not append-only) yields nothing until it grows past them.
func (r *httpReader) readCursor(ctx context.Context, b *batcher, u *unitEmit, from Position) error {
	p := r.spec.Pagination
	cursor := from[httpCursorKey]
	skip := 0
	if v, ok := from[httpSkipKey]; ok {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			return fmt.Errorf("data: http source %q: position %s = %q is not a count of records", r.name, httpSkipKey, v)
		}
		skip = n
	}
	for n := range p.MaxPages {
		pageURL := r.url
		if cursor != "" {
			pageURL = r.withParam(p.Param, cursor)
		}
		pg, err := r.get(ctx, pageURL, n+1)
		if err != nil {
			return err
		}
		at := cursor
		u.begin(skip, func(k int) Position {
			return Position{httpCursorKey: at, httpSkipKey: strconv.Itoa(k)}
		})
		fresh := pg.entries[min(skip, pg.len()):]
		if pg.cursor == "" || pg.cursor == cursor {
			// The last page, or an API that gives back the cursor it
			// was given ("nothing new yet"): following it would read
			// the page again.
			if len(fresh) == 0 {
				return nil // nothing new; the position stays
			}
			return r.hand(b, fresh, Position{httpCursorKey: cursor, httpSkipKey: strconv.Itoa(skip + len(fresh))})
		}
		if err := r.hand(b, fresh, Position{httpCursorKey: pg.cursor, httpSkipKey: "0"}); err != nil {
			return err
		}
		cursor, skip = pg.cursor, 0
	}
	return nil
}

// hand emits a page's entries; advance goes with the page's last batch.
func (r *httpReader) hand(b *batcher, entries []entry, advance Position) error {
	for _, e := range entries {
		var err error
		if e.bad != nil {
			err = b.addBad(*e.bad)
		} else {
			err = b.add(e.rec)
		}
		if err != nil {
			return err
		}
	}
	return b.end(advance)
}

// withParam is the URL with the query parameter param set to value.
func (r *httpReader) withParam(param, value string) *url.URL {
	u := *r.url
	q := u.Query()
	q.Set(param, value)
	u.RawQuery = q.Encode()
	return &u
}

// shown is the URL as errors show it: without user info, and with the
// values of the query replaced, since an API key is often one of them; the
// pagination parameter, which says which page failed, is kept.
func (r *httpReader) shown(u *url.URL) string {
	c := *u
	c.User = nil
	q := c.Query()
	for k := range q {
		if r.spec.Pagination == nil || k != r.spec.Pagination.Param {
			q[k] = []string{"xxx"}
		}
	}
	c.RawQuery = q.Encode()
	return c.String()
}

// get GETs one page and decodes it. n names the page in bad records'
// offsets: its number with page pagination, else its place in this read
// from 1.
func (r *httpReader) get(ctx context.Context, u *url.URL, n int) (*page, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return nil, fmt.Errorf("data: http source %q: GET %s: %v", r.name, r.shown(u), err)
	}
	if r.token != "" {
		req.Header.Set("Authorization", "Bearer "+r.token)
	}
	switch r.spec.Format {
	case "csv":
		req.Header.Set("Accept", "text/csv")
	case "ndjson":
		req.Header.Set("Accept", "application/x-ndjson")
	default:
		req.Header.Set("Accept", "application/json")
	}
	resp, err := r.client.Do(req)
	if err != nil {
		// The client's error repeats the whole URL, query and all: keep
		// only its cause.
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return nil, fmt.Errorf("data: http source %q: GET %s: %w", r.name, r.shown(u), err)
	}
	defer resp.Body.Close()
	body := &cappedReader{r: resp.Body, limit: r.maxBody}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		head, _ := io.ReadAll(io.LimitReader(resp.Body, errorBodyBytes))
		text := strings.TrimSpace(strings.ToValidUTF8(string(head), "?"))
		if r.token != "" {
			text = strings.ReplaceAll(text, r.token, "xxx") // an API that echoes the request
		}
		if resp.StatusCode == http.StatusUnauthorized || resp.StatusCode == http.StatusForbidden {
			return nil, fmt.Errorf("data: http source %q: GET %s: %s: %s: %w", r.name, r.shown(u), resp.Status, text, ErrAuth)
		}
		return nil, fmt.Errorf("data: http source %q: GET %s: %s: %s", r.name, r.shown(u), resp.Status, text)
	}
	var pg *page
	switch r.spec.Format {
	case "csv":
		pg, err = r.decodeCSV(body, n)
	case "ndjson":
		pg, err = r.decodeNDJSON(body, n)
	default:
		pg, err = r.decodeJSON(body, n)
	}
	if err != nil {
		return nil, fmt.Errorf("data: http source %q: GET %s: %w", r.name, r.shown(u), err)
	}
	return pg, nil
}

// errBodyTooLarge is returned by a cappedReader past its limit.
var errBodyTooLarge = errors.New("the answer is too large")

// cappedReader fails once more than limit bytes are read: an answer cut
// short silently would read as fewer records.
type cappedReader struct {
	r           io.Reader
	limit, read int64
}

func (c *cappedReader) Read(p []byte) (int, error) {
	if c.read > c.limit {
		return 0, fmt.Errorf("%w: more than %d bytes", errBodyTooLarge, c.limit)
	}
	if room := c.limit - c.read + 1; int64(len(p)) > room {
		p = p[:room] // one byte past the limit is enough to know
	}
	n, err := c.r.Read(p)
	c.read += int64(n)
	if c.read > c.limit {
		return n, fmt.Errorf("%w: more than %d bytes", errBodyTooLarge, c.limit)
	}
	return n, err
}

// decodeJSON reads an array of objects, or an object holding one under
// RecordsField (and the next cursor under CursorField).
func (r *httpReader) decodeJSON(body io.Reader, n int) (*page, error) {
	data, err := io.ReadAll(body)
	if err != nil {
		return nil, err
	}
	var items []json.RawMessage
	pg := &page{}
	if field := r.spec.RecordsField; field != "" {
		var obj map[string]json.RawMessage
		if err := json.Unmarshal(data, &obj); err != nil {
			return nil, fmt.Errorf("the answer is not a JSON object holding %q: %v", field, err)
		}
		if raw, ok := obj[field]; ok && string(bytes.TrimSpace(raw)) != "null" {
			if err := json.Unmarshal(raw, &items); err != nil {
				return nil, fmt.Errorf("field %q of the answer is not an array: %v", field, err)
			}
		}
		if p := r.spec.Pagination; p != nil && p.Type == structs.PaginationCursor {
			if pg.cursor, err = cursorText(obj[p.CursorField]); err != nil {
				return nil, fmt.Errorf("field %q of the answer: %v", p.CursorField, err)
			}
		}
	} else if err := json.Unmarshal(data, &items); err != nil {
		return nil, fmt.Errorf("the answer is not a JSON array (set records_field if the records are a field of an object): %v", err)
	}
	for i, raw := range items {
		rec, err := DecodeJSONRecord(raw)
		if err != nil {
			pg.addBad(fmt.Sprintf("record %d of page %d", i+1, n), err.Error(), string(raw))
			continue
		}
		pg.add(rec)
	}
	return pg, nil
}

// cursorText is a cursor as the next request sends it: a string as it is,
// a number as written; null or absent is "".
func cursorText(raw json.RawMessage) (string, error) {
	raw = bytes.TrimSpace(raw)
	switch {
	case len(raw) == 0 || string(raw) == "null":
		return "", nil
	case raw[0] == '"':
		var s string
		err := json.Unmarshal(raw, &s)
		return s, err
	case raw[0] == '-' || (raw[0] >= '0' && raw[0] <= '9'):
		return string(raw), nil
	}
	return "", fmt.Errorf("the cursor %.40s is neither a string nor a number", raw)
}

// decodeNDJSON reads one object per line. A line that is not one is a bad
// record and the page goes on.
func (r *httpReader) decodeNDJSON(body io.Reader, n int) (*page, error) {
	sc := bufio.NewScanner(body)
	sc.Buffer(make([]byte, 0, 64<<10), maxHTTPLine)
	pg := &page{}
	for line := 1; sc.Scan(); line++ {
		text := bytes.TrimSpace(sc.Bytes())
		if len(text) == 0 {
			continue
		}
		rec, err := DecodeJSONRecord(text)
		if err != nil {
			pg.addBad(fmt.Sprintf("line %d of page %d", line, n), err.Error(), string(text))
			continue
		}
		pg.add(rec)
	}
	if err := sc.Err(); err != nil {
		if errors.Is(err, bufio.ErrTooLong) {
			return nil, fmt.Errorf("a line is longer than %d bytes", maxHTTPLine)
		}
		return nil, err
	}
	return pg, nil
}

// decodeCSV reads a header line, then one record per line, each field
// typed by sniffValue. A line with the wrong number of fields, or one the
// CSV reader cannot split, is a bad record.
func (r *httpReader) decodeCSV(body io.Reader, n int) (*page, error) {
	cr := csv.NewReader(bufio.NewReaderSize(body, 64<<10))
	cr.FieldsPerRecord = -1 // checked here, to quarantine the line and go on
	header, err := cr.Read()
	if err == io.EOF {
		return &page{}, nil // an empty answer: no records
	}
	if err != nil {
		return nil, fmt.Errorf("csv header: %w", err)
	}
	header[0] = strings.TrimPrefix(header[0], "\ufeff")
	pg := &page{}
	for {
		rec, err := cr.Read()
		if err == io.EOF {
			return pg, nil
		}
		var pe *csv.ParseError
		if errors.As(err, &pe) && !errors.Is(err, errBodyTooLarge) {
			pg.addBad(fmt.Sprintf("line %d of page %d", pe.StartLine, n), pe.Err.Error(), "")
			continue
		}
		if err != nil {
			return nil, err
		}
		line, _ := cr.FieldPos(0)
		if len(rec) != len(header) {
			pg.addBad(fmt.Sprintf("line %d of page %d", line, n), fmt.Sprintf("%d fields, the header has %d", len(rec), len(header)), strings.Join(rec, ","))
			continue
		}
		out := make(Record, len(header))
		for i, f := range rec {
			out[header[i]] = sniffValue(f)
		}
		pg.add(out)
	}
}

// Close releases nothing: the client's connections are its owner's.
func (r *httpReader) Close() error { return nil }
