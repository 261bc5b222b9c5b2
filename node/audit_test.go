package node

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
)

func testAuditLog(t *testing.T, path string, maxBytes int64) *auditLog {
	t.Helper()
	l, err := newAuditLog(path, maxBytes, hclog.NewNullLogger())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return l
}

func auditRec(i int) auditRecord {
	return auditRecord{
		Node: "node-1", AccessorID: strings.Repeat("a", 32), Method: "POST",
		Path: fmt.Sprintf("/v1/models/m%d", i), Status: 201, RemoteAddr: "10.0.0.7:51234",
	}
}

// readAuditLines returns the lines of file, each decoded into a map; a line
// that is not one whole JSON object fails the test.
func readAuditLines(t *testing.T, file string) []map[string]any {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	if len(b) > 0 && b[len(b)-1] != '\n' {
		t.Fatalf("%s does not end with a whole line: %q", file, b[max(0, len(b)-80):])
	}
	var out []map[string]any
	sc := bufio.NewScanner(strings.NewReader(string(b)))
	for sc.Scan() {
		var m map[string]any
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			t.Fatalf("%s: line %d is not JSON: %v: %q", file, len(out)+1, err, sc.Text())
		}
		out = append(out, m)
	}
	return out
}

func TestAuditLog_LinesDecode(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "log", "kiln")
	path := filepath.Join(dir, "audit.log")
	l := testAuditLog(t, path, 64<<20)
	at := time.Date(2026, 3, 4, 5, 6, 7, 890123456, time.FixedZone("CET", 3600))
	r := auditRec(1)
	r.Time = at
	l.record(r)
	l.record(auditRec(2)) // Time left zero: now
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if err := l.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}

	lines := readAuditLines(t, path)
	if len(lines) != 2 {
		t.Fatalf("%d lines, want 2", len(lines))
	}
	// Exactly these keys: the record has nowhere to put a token's secret.
	wantKeys := []string{"accessor_id", "method", "node", "path", "remote_addr", "status", "time"}
	for i, m := range lines {
		var keys []string
		for k := range m {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		if !slices.Equal(keys, wantKeys) {
			t.Errorf("line %d has keys %v, want %v", i+1, keys, wantKeys)
		}
		ts, _ := m["time"].(string)
		parsed, err := time.Parse(time.RFC3339Nano, ts)
		if err != nil || !strings.HasSuffix(ts, "Z") {
			t.Errorf("line %d: time %q is not RFC 3339 in UTC (%v)", i+1, ts, err)
		}
		if i == 0 && !parsed.Equal(at) {
			t.Errorf("line 1: time %v, want %v", parsed, at)
		}
	}
	if m := lines[0]; m["node"] != "node-1" || m["method"] != "POST" || m["path"] != "/v1/models/m1" || m["status"] != 201.0 || m["remote_addr"] != "10.0.0.7:51234" || m["accessor_id"] != strings.Repeat("a", 32) {
		t.Errorf("line 1 = %v", m)
	}

	for _, c := range []struct {
		path string
		want os.FileMode
	}{{dir, 0o700}, {path, 0o600}} {
		st, err := os.Stat(c.path)
		if err != nil {
			t.Fatal(err)
		}
		if st.Mode().Perm() != c.want {
			t.Errorf("%s has mode %v, want %v", c.path, st.Mode().Perm(), c.want)
		}
	}
}

func TestAuditLog_Rotation(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.log")
	const maxBytes = 1024
	// A file left from before, already past the limit, is rotated first.
	if err := os.WriteFile(path, []byte(strings.Repeat(`{"old":true}`+"\n", 100)), 0o600); err != nil {
		t.Fatal(err)
	}
	l := testAuditLog(t, path, maxBytes)
	const n = 300
	for i := 0; i < n; i++ {
		l.record(auditRec(i))
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}

	// Oldest first: path.5 ... path.1, path.
	files := []string{path}
	for i := 1; i <= auditKeep; i++ {
		files = append([]string{fmt.Sprintf("%s.%d", path, i)}, files...)
	}
	if _, err := os.Stat(fmt.Sprintf("%s.%d", path, auditKeep+1)); !os.IsNotExist(err) {
		t.Fatalf("%s.%d exists (%v): more than %d rotated files", path, auditKeep+1, err, auditKeep)
	}
	var seq []int
	for _, f := range files {
		st, err := os.Stat(f)
		if err != nil {
			t.Fatalf("after %d records: %v", n, err)
		}
		if st.Size() > maxBytes {
			t.Errorf("%s has %d bytes, more than %d", f, st.Size(), maxBytes)
		}
		for _, m := range readAuditLines(t, f) {
			var i int
			if _, err := fmt.Sscanf(fmt.Sprint(m["path"]), "/v1/models/m%d", &i); err != nil {
				t.Fatalf("%s: line %v", f, m)
			}
			seq = append(seq, i)
		}
	}
	// What is kept is the newest records, in order, none missing.
	if len(seq) == 0 || seq[len(seq)-1] != n-1 {
		t.Fatalf("kept records %v do not end with %d", seq, n-1)
	}
	for i := 1; i < len(seq); i++ {
		if seq[i] != seq[i-1]+1 {
			t.Fatalf("kept records are not consecutive: %v", seq)
		}
	}
}

func TestAuditLog_ConcurrentWritersWriteWholeLines(t *testing.T) {
	tests := []struct {
		name     string
		maxBytes int64
	}{
		{"one file", 64 << 20},
		{"rotating", 16 << 10},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "audit.log")
			l := testAuditLog(t, path, tt.maxBytes)
			const writers, each = 8, 250
			var wg sync.WaitGroup
			for w := 0; w < writers; w++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for i := 0; i < each; i++ {
						r := auditRec(w*each + i)
						r.Path += strings.Repeat("/x", i%50) // lines of many lengths
						l.record(r)
					}
				}()
			}
			wg.Wait()
			if err := l.Close(); err != nil {
				t.Fatal(err)
			}
			total := 0
			for _, f := range append([]string{path}, func() []string {
				var rotated []string
				for i := 1; i <= auditKeep; i++ {
					if _, err := os.Stat(fmt.Sprintf("%s.%d", path, i)); err == nil {
						rotated = append(rotated, fmt.Sprintf("%s.%d", path, i))
					}
				}
				return rotated
			}()...) {
				total += len(readAuditLines(t, f))
			}
			if tt.maxBytes == 64<<20 && total != writers*each {
				t.Fatalf("%d lines, want %d", total, writers*each)
			}
			if total == 0 {
				t.Fatal("no lines")
			}
		})
	}
}

func TestAuditLog_RecordAfterCloseIsDropped(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.log")
	l := testAuditLog(t, path, 1<<20)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		for i := 0; i < 2*auditQueueLen; i++ {
			l.record(auditRec(i))
		}
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("record blocked after Close")
	}
}

func TestNewAuditLog_BadPath(t *testing.T) {
	file := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := newAuditLog(filepath.Join(file, "audit.log"), 1<<20, hclog.NewNullLogger()); err == nil {
		t.Fatal("newAuditLog under a regular file succeeded")
	}
}
