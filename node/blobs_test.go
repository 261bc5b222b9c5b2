package node

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/kilnml/kiln/raftfsm/structs"
)

func newTestBlobStore(t *testing.T) *blobStore {
	t.Helper()
	s, err := newBlobStore(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func randomBytes(t *testing.T, n int) []byte {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}

func sha256Hex(b []byte) string {
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// dirNames lists the names in dir, sorted.
func dirNames(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	slices.Sort(names)
	return names
}

// storeBlob ingests and commits data, returning its digest.
func storeBlob(t *testing.T, s *blobStore, data []byte) string {
	t.Helper()
	tmp, digest, _, err := s.ingest(bytes.NewReader(data), int64(len(data)))
	if err != nil {
		t.Fatal(err)
	}
	if err := s.commit(tmp, digest); err != nil {
		t.Fatal(err)
	}
	return digest
}

func TestBlobStore_IngestHashesAndSizes(t *testing.T) {
	cases := []struct {
		name  string
		size  int
		limit int64
	}{
		{"empty", 0, 10},
		{"one byte", 1, 10},
		{"exactly the limit", 10, 10},
		{"several buffers", 3<<20 + 7, 4 << 20},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := newTestBlobStore(t)
			data := randomBytes(t, tc.size)
			tmp, digest, size, err := s.ingest(bytes.NewReader(data), tc.limit)
			if err != nil {
				t.Fatalf("ingest: %v", err)
			}
			if want := sha256Hex(data); digest != want {
				t.Errorf("digest %s, want %s", digest, want)
			}
			if size != int64(tc.size) {
				t.Errorf("size %d, want %d", size, tc.size)
			}
			if filepath.Dir(tmp) != s.tmpDir() {
				t.Errorf("temporary file %s is not under %s", tmp, s.tmpDir())
			}
			got, err := os.ReadFile(tmp)
			if err != nil || !bytes.Equal(got, data) {
				t.Errorf("temporary file holds %d bytes (err %v), want the %d ingested", len(got), err, len(data))
			}
			if _, ok := s.has(digest); ok {
				t.Error("an ingested blob is stored before commit")
			}
		})
	}
}

func TestBlobStore_IngestOverLimit(t *testing.T) {
	for _, over := range []int{1, 1 << 20} {
		s := newTestBlobStore(t)
		const limit = 1000
		_, _, _, err := s.ingest(bytes.NewReader(randomBytes(t, limit+over)), limit)
		if !errors.Is(err, errBlobTooLarge) {
			t.Errorf("%d bytes over: err %v, want errBlobTooLarge", over, err)
		}
		if names := dirNames(t, s.tmpDir()); len(names) != 0 {
			t.Errorf("%d bytes over: temporary files left: %v", over, names)
		}
		if names := dirNames(t, s.shaDir()); len(names) != 0 {
			t.Errorf("%d bytes over: blobs stored: %v", over, names)
		}
	}
}

// failingReader returns some bytes, then an error.
type failingReader struct{ sent bool }

func (r *failingReader) Read(p []byte) (int, error) {
	if !r.sent {
		r.sent = true
		return copy(p, "partial"), nil
	}
	return 0, errors.New("connection reset")
}

func TestBlobStore_IngestReadErrorLeavesNothing(t *testing.T) {
	s := newTestBlobStore(t)
	if _, _, _, err := s.ingest(&failingReader{}, 1<<20); err == nil || !strings.Contains(err.Error(), "connection reset") {
		t.Fatalf("err %v, want the reader's error", err)
	}
	if names := dirNames(t, s.tmpDir()); len(names) != 0 {
		t.Errorf("temporary files left: %v", names)
	}
}

func TestBlobStore_CommitRenamesAndIsIdempotent(t *testing.T) {
	s := newTestBlobStore(t)
	data := []byte("model bytes")
	tmp, digest, _, err := s.ingest(bytes.NewReader(data), 100)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.commit(tmp, digest); err != nil {
		t.Fatalf("commit: %v", err)
	}
	if _, err := os.Stat(tmp); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("temporary file still there after commit: %v", err)
	}
	p := filepath.Join(s.dir, "sha256", digest)
	if s.path(digest) != p {
		t.Errorf("path %s, want %s", s.path(digest), p)
	}
	if got, err := os.ReadFile(p); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("stored blob: %q, %v", got, err)
	}
	if size, ok := s.has(digest); !ok || size != int64(len(data)) {
		t.Errorf("has: %d %v", size, ok)
	}

	// An old blob committed again: the new temp is dropped, the time refreshed.
	old := time.Now().Add(-48 * time.Hour)
	if err := os.Chtimes(p, old, old); err != nil {
		t.Fatal(err)
	}
	tmp2, digest2, _, err := s.ingest(bytes.NewReader(data), 100)
	if err != nil {
		t.Fatal(err)
	}
	if digest2 != digest {
		t.Fatalf("same bytes, digests %s and %s", digest, digest2)
	}
	if err := s.commit(tmp2, digest2); err != nil {
		t.Fatalf("second commit: %v", err)
	}
	if names := dirNames(t, s.tmpDir()); len(names) != 0 {
		t.Errorf("second commit left temporary files: %v", names)
	}
	fi, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	if !fi.ModTime().After(old.Add(time.Hour)) {
		t.Errorf("second commit kept the old time %s", fi.ModTime())
	}
	if names := dirNames(t, s.shaDir()); !slices.Equal(names, []string{digest}) {
		t.Errorf("sha256 dir holds %v, want just %s", names, digest)
	}
}

func TestBlobStore_HasRemoveList(t *testing.T) {
	s := newTestBlobStore(t)
	a := storeBlob(t, s, []byte("aaaa"))
	b := storeBlob(t, s, []byte("bbbbbbbb"))
	missing := sha256Hex([]byte("never stored"))
	// Files that are not blobs are not listed.
	if err := os.WriteFile(filepath.Join(s.shaDir(), "README"), []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(s.shaDir(), sha256Hex([]byte("a dir"))), 0o750); err != nil {
		t.Fatal(err)
	}

	list, err := s.list()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]int64{}
	for _, sb := range list {
		got[sb.digest] = sb.size
		if sb.modTime.IsZero() {
			t.Errorf("%s listed without a time", sb.digest)
		}
	}
	if len(got) != 2 || got[a] != 4 || got[b] != 8 {
		t.Errorf("list: %v, want %s:4 and %s:8", got, a, b)
	}
	if _, ok := s.has(missing); ok {
		t.Error("has reports a blob never stored")
	}
	if _, ok := s.has(sha256Hex([]byte("a dir"))); ok {
		t.Error("has reports a directory as a blob")
	}

	if err := s.remove(a); err != nil {
		t.Fatalf("remove: %v", err)
	}
	if _, ok := s.has(a); ok {
		t.Error("removed blob still there")
	}
	if _, ok := s.has(b); !ok {
		t.Error("removing one blob removed another")
	}
	if err := s.remove(missing); err != nil {
		t.Errorf("removing a missing blob: %v", err)
	}
}

func TestBlobStore_ClearsTempsAtStart(t *testing.T) {
	dataDir := t.TempDir()
	s, err := newBlobStore(dataDir)
	if err != nil {
		t.Fatal(err)
	}
	kept := storeBlob(t, s, []byte("kept"))
	for range 3 {
		f, err := s.tempFile()
		if err != nil {
			t.Fatal(err)
		}
		f.WriteString("half a transfer")
		f.Close()
	}
	if names := dirNames(t, s.tmpDir()); len(names) != 3 {
		t.Fatalf("tmp holds %v before restart, want 3 files", names)
	}
	s2, err := newBlobStore(dataDir)
	if err != nil {
		t.Fatal(err)
	}
	if names := dirNames(t, s2.tmpDir()); len(names) != 0 {
		t.Errorf("tmp holds %v after restart", names)
	}
	if _, ok := s2.has(kept); !ok {
		t.Error("restart lost a stored blob")
	}
}

func TestBlobStore_StaleTempsRemovesOnlyOld(t *testing.T) {
	s := newTestBlobStore(t)
	mk := func(age time.Duration) string {
		f, err := s.tempFile()
		if err != nil {
			t.Fatal(err)
		}
		f.Close()
		at := time.Now().Add(-age)
		if err := os.Chtimes(f.Name(), at, at); err != nil {
			t.Fatal(err)
		}
		return filepath.Base(f.Name())
	}
	old := mk(2 * time.Hour)
	young := mk(time.Minute)
	fresh := mk(0)
	s.staleTemps(time.Hour)
	names := dirNames(t, s.tmpDir())
	want := []string{young, fresh}
	slices.Sort(want)
	if !slices.Equal(names, want) {
		t.Errorf("after staleTemps tmp holds %v, want %v (old %s removed)", names, want, old)
	}
}

func TestBlobStore_RefusesInvalidDigests(t *testing.T) {
	valid := sha256Hex([]byte("x"))
	cases := []struct{ name, digest string }{
		{"empty", ""},
		{"parent dir", "../x"},
		{"escape to data dir", "../../node-id"},
		{"absolute", "/etc/passwd"},
		{"uppercase", strings.ToUpper(valid)},
		{"short", valid[:63]},
		{"long", valid + "0"},
		{"digest with a slash", valid[:32] + "/" + valid[33:]},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dataDir := t.TempDir()
			s, err := newBlobStore(dataDir)
			if err != nil {
				t.Fatal(err)
			}
			// A file the digest would reach if it were used as a path.
			victim := filepath.Join(dataDir, "node-id")
			if err := os.WriteFile(victim, []byte("id"), 0o600); err != nil {
				t.Fatal(err)
			}
			if _, ok := s.has(tc.digest); ok {
				t.Error("has accepted the digest")
			}
			tmp, _, _, err := s.ingest(strings.NewReader("payload"), 100)
			if err != nil {
				t.Fatal(err)
			}
			if err := s.commit(tmp, tc.digest); structs.ErrorCode(err) != structs.CodeInvalid {
				t.Errorf("commit: err %v, want an invalid digest error", err)
			}
			if _, err := os.Stat(tmp); !errors.Is(err, os.ErrNotExist) {
				t.Error("a refused commit left its temporary file")
			}
			if err := s.remove(tc.digest); structs.ErrorCode(err) != structs.CodeInvalid {
				t.Errorf("remove: err %v, want an invalid digest error", err)
			}
			if b, err := os.ReadFile(victim); err != nil || string(b) != "id" {
				t.Errorf("file outside the store touched: %q %v", b, err)
			}
			if names := dirNames(t, s.shaDir()); len(names) != 0 {
				t.Errorf("sha256 dir holds %v", names)
			}
		})
	}
}
