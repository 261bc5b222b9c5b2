package node

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/hashicorp/raft"

	"github.com/kilnml/kiln/raftfsm"
	"github.com/kilnml/kiln/raftfsm/structs"
)

// httpStatus maps error codes to HTTP statuses.
func httpStatus(code string) int {
	switch code {
	case structs.CodeInvalid:
		return http.StatusBadRequest
	case structs.CodeNotFound:
		return http.StatusNotFound
	case structs.CodeConflict, structs.CodeNotDeployed:
		return http.StatusConflict
	case structs.CodeOverloaded:
		return http.StatusTooManyRequests
	case structs.CodeTooLarge:
		return http.StatusRequestEntityTooLarge
	case structs.CodeUnauthenticated:
		return http.StatusUnauthorized
	case structs.CodePermissionDenied:
		return http.StatusForbidden
	case structs.CodeNoLeader, structs.CodeUnavailable, structs.CodeNotLeader:
		return http.StatusServiceUnavailable
	case "method_not_allowed":
		return http.StatusMethodNotAllowed
	}
	return http.StatusInternalServerError
}

// writeError writes {"error": ..., "code": ...} with the status of its code.
func writeError(w http.ResponseWriter, err error) {
	var ce *structs.CodedError
	if !errors.As(err, &ce) {
		ce = &structs.CodedError{Code: structs.CodeInternal, Message: err.Error()}
	}
	status := httpStatus(ce.Code)
	if status == http.StatusServiceUnavailable || status == http.StatusTooManyRequests {
		w.Header().Set("Retry-After", "1")
	}
	writeJSON(w, status, ce)
}

// writeJSON writes v as compact JSON; the CLI formats it for people.
func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		status = http.StatusInternalServerError
		b, _ = json.Marshal(&structs.CodedError{Code: structs.CodeInternal, Message: "encode response: " + err.Error()})
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(b)+1))
	w.WriteHeader(status)
	_, _ = w.Write(append(b, '\n'))
}

// decodeBody reads a JSON body of at most max_body_bytes into v. Unknown fields,
// wrong types, trailing data and oversized bodies are errors naming the problem.
func (a *Agent) decodeBody(w http.ResponseWriter, r *http.Request, v any) error {
	return decodeJSON(http.MaxBytesReader(w, r.Body, a.cfg.MaxBodyBytes), v)
}

// readBody reads the whole request body, up to max_body_bytes.
func (a *Agent) readBody(w http.ResponseWriter, r *http.Request) ([]byte, error) {
	size := bytes.MinRead
	if n := r.ContentLength; n > 0 && n <= a.cfg.MaxBodyBytes {
		size += int(n) // ReadFrom wants MinRead free before each read, EOF's included
	}
	buf := bytes.NewBuffer(make([]byte, 0, size))
	if _, err := buf.ReadFrom(http.MaxBytesReader(w, r.Body, a.cfg.MaxBodyBytes)); err != nil {
		return nil, jsonError(err)
	}
	return buf.Bytes(), nil
}

// decodeJSON is decodeBody's pure part, fuzzed on its own.
func decodeJSON(body io.Reader, v any) error {
	dec := json.NewDecoder(body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return jsonError(err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return structs.Errorf(structs.CodeInvalid, "request body has data after the JSON value")
	}
	return nil
}

func jsonError(err error) error {
	var mbe *http.MaxBytesError
	var ute *json.UnmarshalTypeError
	var se *json.SyntaxError
	switch {
	case errors.As(err, &mbe):
		return structs.Errorf(structs.CodeTooLarge, "request body is larger than %d bytes", mbe.Limit)
	case errors.As(err, &ute):
		field := ute.Field
		if field == "" {
			return structs.Errorf(structs.CodeInvalid, "request body must be a JSON object, not %s", ute.Value)
		}
		return structs.Errorf(structs.CodeInvalid, "field %s must be %s, not %s", field, jsonTypeName(ute.Type.String()), ute.Value)
	case errors.As(err, &se):
		return structs.Errorf(structs.CodeInvalid, "malformed JSON at byte %d: %v", se.Offset, err)
	case errors.Is(err, io.EOF):
		return structs.Errorf(structs.CodeInvalid, "request body is empty")
	case errors.Is(err, io.ErrUnexpectedEOF):
		return structs.Errorf(structs.CodeInvalid, "malformed JSON: unexpected end of body")
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		return structs.Errorf(structs.CodeInvalid, "unknown field %s", strings.TrimPrefix(err.Error(), "json: unknown field "))
	}
	return structs.Errorf(structs.CodeInvalid, "malformed JSON: %v", err)
}

func jsonTypeName(goType string) string {
	switch {
	case goType == "string", goType == "*string":
		return "a string"
	case strings.HasPrefix(goType, "map["):
		return "an object"
	case strings.HasPrefix(goType, "[]"):
		return "an array"
	case strings.HasPrefix(goType, "int"), strings.HasPrefix(goType, "uint"), strings.HasPrefix(goType, "float"):
		return "a number"
	case goType == "bool":
		return "a boolean"
	}
	return "of type " + goType
}

// Read consistency levels (DESIGN.md §4).
const (
	consistencyStale      = "stale"
	consistencyDefault    = "default"
	consistencyConsistent = "consistent"
)

// maxIndexWait caps ?index=N waits.
const maxIndexWait = 30 * time.Second

// readTxn opens a read view at the consistency the request asks for, waits for
// ?index=N, and sets the X-Kiln-* headers. The caller must Discard the txn.
func (a *Agent) readTxn(w http.ResponseWriter, r *http.Request) (*raftfsm.Txn, error) {
	q := r.URL.Query()
	mode := q.Get("consistency")
	if mode == "" {
		mode = consistencyDefault
	}
	if mode != consistencyStale && mode != consistencyDefault && mode != consistencyConsistent {
		return nil, structs.Errorf(structs.CodeInvalid, "consistency must be stale, default or consistent, not %q", mode)
	}
	if err := a.waitRequestIndex(r); err != nil {
		return nil, err
	}
	var txn *raftfsm.Txn
	switch mode {
	case consistencyStale:
		txn = a.fsm.ReadTxn()
	case consistencyDefault:
		if addr, _ := a.raft.LeaderWithID(); addr == "" {
			return nil, structs.Errorf(structs.CodeNoLeader, "no known leader; retry, or read with ?consistency=stale")
		}
		txn = a.fsm.ReadTxn()
	case consistencyConsistent:
		var err error
		if txn, err = a.consistentTxn(r.Context()); err != nil {
			return nil, err
		}
	}
	a.setReadHeaders(w, txn.Index())
	return txn, nil
}

// consistentTxn gives a view that includes every write acknowledged before the
// request. On the leader: open the txn, then verify leadership. On a follower: ask
// the leader for its read index and wait until the local FSM reaches it.
func (a *Agent) consistentTxn(ctx context.Context) (*raftfsm.Txn, error) {
	deadline := time.Now().Add(leaderWait)
	for {
		txn, err := a.consistentTxnOnce(ctx)
		if err == nil || !retryable(err) || time.Now().After(deadline) {
			return txn, err
		}
		select {
		case <-ctx.Done():
			return nil, structs.Errorf(structs.CodeNoLeader, "no leader: %v", ctx.Err())
		case <-time.After(25 * time.Millisecond):
		}
	}
}

func (a *Agent) consistentTxnOnce(ctx context.Context) (*raftfsm.Txn, error) {
	if a.raft.State() == raft.Leader {
		if !a.leaderReady.Load() {
			return nil, errNoLeaderYet
		}
		txn := a.fsm.ReadTxn()
		if err := a.raft.VerifyLeader().Error(); err != nil {
			txn.Discard()
			return nil, structs.Errorf(structs.CodeNotLeader, "leadership not verified: %v", err)
		}
		return txn, nil
	}
	addr, _ := a.raft.LeaderWithID()
	if addr == "" {
		return nil, errNoLeaderYet
	}
	var reply readIndexReply
	if err := a.trans.Call(ctx, string(addr), rpcReadIndex, &readIndexArgs{}, &reply); err != nil {
		err = fromTransport(err)
		if structs.ErrorCode(err) == structs.CodeUnavailable {
			// A read is idempotent: a lost connection is as good as unreachable.
			return nil, errNoLeaderYet
		}
		return nil, err
	}
	wctx, cancel := context.WithTimeout(ctx, maxIndexWait)
	defer cancel()
	if err := a.fsm.WaitForIndex(wctx, reply.Index); err != nil {
		return nil, structs.Errorf(structs.CodeUnavailable, "local state did not reach the leader's index %d", reply.Index)
	}
	return a.fsm.ReadTxn(), nil
}

func (a *Agent) setReadHeaders(w http.ResponseWriter, index uint64) {
	h := w.Header()
	h.Set("X-Kiln-Index", strconv.FormatUint(index, 10))
	addr, _ := a.raft.LeaderWithID()
	h.Set("X-Kiln-Known-Leader", strconv.FormatBool(addr != ""))
	var contact time.Duration
	if a.raft.State() != raft.Leader {
		if lc := a.raft.LastContact(); !lc.IsZero() {
			contact = time.Since(lc)
		}
	}
	h.Set("X-Kiln-Last-Contact", strconv.FormatInt(contact.Milliseconds(), 10))
}

// serveRead answers a read: it opens a view at the request's consistency,
// and writes what read returns from it as JSON (or its error).
func serveRead[T any](a *Agent, w http.ResponseWriter, r *http.Request, read func(*raftfsm.Txn) (T, error)) {
	txn, err := a.readTxn(w, r)
	if err != nil {
		writeError(w, err)
		return
	}
	defer txn.Discard()
	v, err := read(txn)
	if err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, v)
}

// visiblePage is one page of a list that leaves out what the token may not
// read: it reads pages from fetch until limit visible items are found (all
// of them when limit is 0), so a filtered page is as full as an unfiltered
// one. next is the cursor after the last item returned, "" when nothing is
// left. It never returns nil items.
func visiblePage[T any](cursor string, limit int, fetch func(cursor string, limit int) ([]T, string, error),
	visible func(T) bool, key func(T) string) (items []T, next string, err error) {
	items = []T{}
	for {
		page, more, err := fetch(cursor, limit)
		if err != nil {
			return nil, "", err
		}
		for i, it := range page {
			if !visible(it) {
				continue
			}
			items = append(items, it)
			if limit > 0 && len(items) == limit {
				if i == len(page)-1 && more == "" {
					return items, "", nil
				}
				return items, key(it), nil
			}
		}
		if more == "" {
			return items, "", nil
		}
		cursor = more
	}
}

// waitRequestIndex waits for ?index=N before the token is resolved, so that a
// client reading its own write sees ACL changes up to N as well: a token
// deleted at N is refused on every node that is asked with ?index=N.
func (a *Agent) waitRequestIndex(r *http.Request) error {
	if !strings.Contains(r.URL.RawQuery, "index=") {
		return nil // the common case, without parsing the query
	}
	s := r.URL.Query().Get("index")
	if s == "" {
		return nil
	}
	idx, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		return structs.Errorf(structs.CodeInvalid, "index must be a non-negative integer, not %q", s)
	}
	ctx, cancel := context.WithTimeout(r.Context(), maxIndexWait)
	defer cancel()
	if err := a.fsm.WaitForIndex(ctx, idx); err != nil {
		return structs.Errorf(structs.CodeUnavailable, "index %d not reached within %s (applied %d)", idx, maxIndexWait, a.fsm.AppliedIndex())
	}
	return nil
}

// listParams reads ?limit= and ?cursor=.
func listParams(r *http.Request) (cursor string, limit int, err error) {
	q := r.URL.Query()
	cursor = q.Get("cursor")
	if s := q.Get("limit"); s != "" {
		limit, err = strconv.Atoi(s)
		if err != nil || limit < 1 || limit > 10000 {
			return "", 0, structs.Errorf(structs.CodeInvalid, "limit must be an integer from 1 to 10000, not %q", s)
		}
	}
	return cursor, limit, nil
}

// writeCommitted answers a write with its commit index, so the client can read its
// own write on any node with ?index=.
func writeCommitted(w http.ResponseWriter, status int, index uint64, v any) {
	w.Header().Set("X-Kiln-Index", strconv.FormatUint(index, 10))
	writeJSON(w, status, v)
}

// serveList answers one page (?cursor=, ?limit=) of a named kind, leaving out
// what the token may not read; view shapes each item for the response.
func serveList[T, V any](a *Agent, w http.ResponseWriter, r *http.Request, kind structs.ACLKind,
	fetch func(*raftfsm.Txn) func(cursor string, limit int) ([]T, string, error), name func(T) string, view func(T) V) {
	cursor, limit, err := listParams(r)
	if err != nil {
		writeError(w, err)
		return
	}
	txn, err := a.readTxn(w, r)
	if err != nil {
		writeError(w, err)
		return
	}
	defer txn.Discard()
	items, next, err := visiblePage(cursor, limit, fetch(txn),
		func(it T) bool { return a.allowed(r, kind, name(it), structs.AccessRead) }, name)
	if err != nil {
		writeError(w, err)
		return
	}
	views := make([]V, len(items))
	for i, it := range items {
		views[i] = view(it)
	}
	writeJSON(w, http.StatusOK, map[string]any{"items": views, "next_cursor": next})
}

// serveDelete proposes a delete and answers with its commit index: 200 with
// {"deleted": deleted}, or 204 when deleted is "".
func (a *Agent) serveDelete(w http.ResponseWriter, r *http.Request, t structs.MessageType, cmd any, deleted string) {
	idx, err := a.propose(r.Context(), t, cmd, nil)
	switch {
	case err != nil:
		writeError(w, err)
	case deleted != "":
		writeCommitted(w, http.StatusOK, idx, map[string]any{"deleted": deleted})
	default:
		w.Header().Set("X-Kiln-Index", strconv.FormatUint(idx, 10))
		w.WriteHeader(http.StatusNoContent)
	}
}

// nameFromPath settles a body's name field (field, *given) against the
// path's: empty takes the path's, another is refused.
func nameFromPath(field string, given *string, path string) error {
	if *given != "" && *given != path {
		return structs.Errorf(structs.CodeInvalid, "%s %q differs from the path's %q", field, *given, path)
	}
	*given = path
	return nil
}
