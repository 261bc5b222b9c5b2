package node

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/kilnml/kiln/raftfsm/structs"
)

func TestInFlight_RefusesPastTheLimit(t *testing.T) {
	var f inFlight
	var releases []func()
	for i := range 2 {
		release, err := f.acquire(2, "uploads", "limits.max_concurrent_uploads")
		if err != nil {
			t.Fatalf("place %d: %v", i+1, err)
		}
		releases = append(releases, release)
	}
	_, err := f.acquire(2, "uploads", "limits.max_concurrent_uploads")
	if structs.ErrorCode(err) != structs.CodeOverloaded || !strings.Contains(err.Error(), "limits.max_concurrent_uploads") {
		t.Fatalf("third place: %v, want overloaded naming the limit", err)
	}
	releases[0]()
	if _, err := f.acquire(2, "uploads", "limits.max_concurrent_uploads"); err != nil {
		t.Fatalf("after a release: %v", err)
	}
	if n := f.n.Load(); n != 2 {
		t.Errorf("%d places held, want 2", n)
	}
}

// stalledRequest sends a request's headers, declaring a body of length
// bytes, and the first part of it, then sends nothing more. The connection
// is closed when the test ends.
func stalledRequest(t *testing.T, a *Agent, method, path string, length int, part string) net.Conn {
	t.Helper()
	conn, err := net.Dial("tcp", a.HTTPAddr())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	if _, err := fmt.Fprintf(conn, "%s %s HTTP/1.1\r\nHost: kiln\r\nContent-Length: %d\r\n\r\n%s", method, path, length, part); err != nil {
		t.Fatal(err)
	}
	return conn
}

// readAnswer reads the response on a connection of stalledRequest; a
// server that never answers fails the test once the read gives up.
func readAnswer(t *testing.T, conn net.Conn) (int, string) {
	t.Helper()
	_ = conn.SetReadDeadline(time.Now().Add(30 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("no answer to a stalled request: %v", err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestAgent_StalledBodyIsDropped(t *testing.T) {
	a := testNode(t, func(c *Config) { c.HTTPReadTimeout = 200 * time.Millisecond })
	waitLeader(t, a)
	conn := stalledRequest(t, a, "POST", "/v1/models", 100, `{"name":`)
	if status, body := readAnswer(t, conn); status != 400 {
		t.Fatalf("stalled JSON body: %d %s, want 400", status, body)
	}
	// A body that arrives in time is unaffected.
	createModel(t, a, "m")
}

func TestAgent_HTTPServerTimeouts(t *testing.T) {
	a := testNode(t, func(c *Config) {
		c.HTTPReadTimeout = 20 * time.Second
		c.HTTPWriteTimeout = 3 * time.Minute
		c.HTTPIdleTimeout = 4 * time.Minute
	})
	s := a.http
	if s.ReadTimeout != 20*time.Second || s.WriteTimeout != 3*time.Minute || s.IdleTimeout != 4*time.Minute || s.ReadHeaderTimeout <= 0 {
		t.Errorf("server timeouts: read %s write %s idle %s read header %s", s.ReadTimeout, s.WriteTimeout, s.IdleTimeout, s.ReadHeaderTimeout)
	}
}

// deadlineRecorder is a ResponseWriter whose connection deadlines are noted.
type deadlineRecorder struct {
	*httptest.ResponseRecorder
	reads, writes []time.Time
}

func (d *deadlineRecorder) SetReadDeadline(t time.Time) error {
	d.reads = append(d.reads, t)
	return nil
}

func (d *deadlineRecorder) SetWriteDeadline(t time.Time) error {
	d.writes = append(d.writes, t)
	return nil
}

// timeoutReader answers its pieces, then a deadline error.
type timeoutReader struct{ pieces []string }

func (r *timeoutReader) Read(p []byte) (int, error) {
	if len(r.pieces) == 0 {
		return 0, os.ErrDeadlineExceeded
	}
	n := copy(p, r.pieces[0])
	r.pieces = r.pieces[1:]
	return n, nil
}

func TestLongRequest_Deadlines(t *testing.T) {
	const idle = time.Minute
	t.Run("body read to its end", func(t *testing.T) {
		rec := &deadlineRecorder{ResponseRecorder: httptest.NewRecorder()}
		w, body := longRequest(rec, httptest.NewRequest("POST", "/", strings.NewReader("model bytes")), idle)
		if len(rec.writes) != 1 || !rec.writes[0].IsZero() {
			t.Fatalf("write deadlines %v, want the server's lifted", rec.writes)
		}
		b, err := io.ReadAll(body)
		if err != nil || string(b) != "model bytes" {
			t.Fatalf("read %q, %v", b, err)
		}
		reads := len(rec.reads)
		if reads == 0 || rec.reads[0].Before(time.Now()) {
			t.Fatalf("read deadlines %v, want one ahead of each read", rec.reads)
		}
		// Reading past the end leaves the deadline alone: net/http has
		// cleared it to watch for the client going away.
		if n, err := body.Read(make([]byte, 8)); n != 0 || err != io.EOF {
			t.Fatalf("read after the end: %d, %v", n, err)
		}
		if len(rec.reads) != reads {
			t.Errorf("a read after the end set the read deadline again: %v", rec.reads)
		}
		writeJSON(w, 200, map[string]int{"n": len(b)})
		if len(rec.writes) < 2 || rec.writes[len(rec.writes)-1].Before(time.Now()) {
			t.Errorf("write deadlines %v, want one ahead of the answer", rec.writes)
		}
	})
	t.Run("body that stalls", func(t *testing.T) {
		rec := &deadlineRecorder{ResponseRecorder: httptest.NewRecorder()}
		r := httptest.NewRequest("POST", "/", nil)
		r.Body = io.NopCloser(&timeoutReader{pieces: []string{"a", "b"}})
		_, body := longRequest(rec, r, idle)
		b, err := io.ReadAll(body)
		if string(b) != "ab" || !errors.Is(err, errUploadStalled) {
			t.Fatalf("read %q, %v; want ab, then the upload stalled", b, err)
		}
		if len(rec.reads) != 3 {
			t.Errorf("%d read deadlines, want one per read (3)", len(rec.reads))
		}
	})
}

// A deployment's timeout_ms moves the answer's write deadline past it; a
// deployment without one leaves the server's write_timeout in force.
func TestExtendWriteDeadline(t *testing.T) {
	rec := &deadlineRecorder{ResponseRecorder: httptest.NewRecorder()}
	extendWriteDeadline(rec, &structs.Deployment{})
	if len(rec.writes) != 0 {
		t.Fatalf("write deadlines %v for a deployment without timeout_ms, want none set", rec.writes)
	}
	before := time.Now()
	extendWriteDeadline(rec, &structs.Deployment{TimeoutMS: 300_000})
	if len(rec.writes) != 1 || rec.writes[0].Before(before.Add(5*time.Minute+predictAnswerMargin)) {
		t.Fatalf("write deadlines %v for timeout_ms 300000, want one at least 5m%s ahead", rec.writes, predictAnswerMargin)
	}
}
