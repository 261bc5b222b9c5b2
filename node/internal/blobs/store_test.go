package blobs

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/kilnml/kiln/cluster-tests/testutil"
	"github.com/kilnml/kiln/raftfsm/structs"
)

func TestStore_IngestHashesAndSizes(t *testing.T) {
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
			s := newTestStore(t)
			data := testutil.RandomBytes(t, tc.size)
			tmp, digest, size, err := s.Ingest(bytes.NewReader(data), tc.limit)
			if err != nil {
				t.Fatalf("Ingest: %v", err)
			}
			if want := sha256Hex(data); digest != want {
				t.Errorf("digest %s, want %s", digest, want)
			}
			if size != int64(tc.size) {
				t.Errorf("size %d, want %d", size, tc.size)
			}
			if filepath.Dir(tmp) != s.TmpDir() {
				t.Errorf("temporary file %s is not under %s", tmp, s.TmpDir())
			}
			got, err := os.ReadFile(tmp)
			if err != nil || !bytes.Equal(got, data) {
				t.Errorf("temporary file holds %d bytes (err %v), want the %d ingested", len(got), err, len(data))
			}
			if _, ok := s.Has(digest); ok {
				t.Error("an ingested blob is stored before Commit")
			}
		})
	}
}

func TestStore_IngestOverLimit(t *testing.T) {
	for _, over := range []int{1, 1 << 20} {
		t.Run(fmt.Sprintf("%d bytes over", over), func(t *testing.T) {
			s := newTestStore(t)
			const limit = 1000
			_, _, _, err := s.Ingest(bytes.NewReader(testutil.RandomBytes(t, limit+over)), limit)
			if !errors.Is(err, ErrTooLarge) {
				t.Errorf("err %v, want ErrTooLarge", err)
			}
			if names := testutil.DirNames(t, s.TmpDir()); len(names) != 0 {
				t.Errorf("temporary files left: %v", names)
			}
			if names := testutil.DirNames(t, s.shaDir()); len(names) != 0 {
				t.Errorf("blobs stored: %v", names)
			}
		})
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

func TestStore_IngestReadErrorLeavesNothing(t *testing.T) {
	s := newTestStore(t)
	if _, _, _, err := s.Ingest(&failingReader{}, 1<<20); err == nil || !strings.Contains(err.Error(), "connection reset") {
		t.Fatalf("err %v, want the reader's error", err)
	}
	if names := testutil.DirNames(t, s.TmpDir()); len(names) != 0 {
		t.Errorf("temporary files left: %v", names)
	}
}

func TestStore_CommitRenamesAndIsIdempotent(t *testing.T) {
	s := newTestStore(t)
	data := []byte("model bytes")
	tmp, digest, _, err := s.Ingest(bytes.NewReader(data), 100)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Commit(tmp, digest); err != nil {
		t.Fatalf("Commit: %v", err)
	}
	if _, err := os.Stat(tmp); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("temporary file still there after Commit: %v", err)
	}
	p := filepath.Join(s.dir, "sha256", digest)
	if s.Path(digest) != p {
		t.Errorf("Path %s, want %s", s.Path(digest), p)
	}
	if got, err := os.ReadFile(p); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("stored blob: %q, %v", got, err)
	}
	if size, ok := s.Has(digest); !ok || size != int64(len(data)) {
		t.Errorf("Has: %d %v", size, ok)
	}

	// An old blob committed again: the new temp is dropped, the time refreshed.
	old := time.Now().Add(-48 * time.Hour)
	if err := os.Chtimes(p, old, old); err != nil {
		t.Fatal(err)
	}
	tmp2, digest2, _, err := s.Ingest(bytes.NewReader(data), 100)
	if err != nil {
		t.Fatal(err)
	}
	if digest2 != digest {
		t.Fatalf("same bytes, digests %s and %s", digest, digest2)
	}
	if err := s.Commit(tmp2, digest2); err != nil {
		t.Fatalf("second Commit: %v", err)
	}
	if names := testutil.DirNames(t, s.TmpDir()); len(names) != 0 {
		t.Errorf("second Commit left temporary files: %v", names)
	}
	fi, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	if !fi.ModTime().After(old.Add(time.Hour)) {
		t.Errorf("second Commit kept the old time %s", fi.ModTime())
	}
	if names := testutil.DirNames(t, s.shaDir()); !slices.Equal(names, []string{digest}) {
		t.Errorf("sha256 dir holds %v, want just %s", names, digest)
	}
}

func TestStore_HasRemoveList(t *testing.T) {
	s := newTestStore(t)
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

	list, err := s.List()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]int64{}
	for _, sb := range list {
		got[sb.Digest] = sb.Size
		if sb.ModTime.IsZero() {
			t.Errorf("%s listed without a time", sb.Digest)
		}
	}
	if len(got) != 2 || got[a] != 4 || got[b] != 8 {
		t.Errorf("List: %v, want %s:4 and %s:8", got, a, b)
	}
	if _, ok := s.Has(missing); ok {
		t.Error("Has reports a blob never stored")
	}
	if _, ok := s.Has(sha256Hex([]byte("a dir"))); ok {
		t.Error("Has reports a directory as a blob")
	}

	if err := s.Remove(a); err != nil {
		t.Fatalf("Remove: %v", err)
	}
	if _, ok := s.Has(a); ok {
		t.Error("removed blob still there")
	}
	if _, ok := s.Has(b); !ok {
		t.Error("removing one blob removed another")
	}
	if err := s.Remove(missing); err != nil {
		t.Errorf("removing a missing blob: %v", err)
	}
}

func TestStore_ClearsTempsAtStart(t *testing.T) {
	dataDir := t.TempDir()
	s, err := NewStore(dataDir)
	if err != nil {
		t.Fatal(err)
	}
	kept := storeBlob(t, s, []byte("kept"))
	for range 3 {
		f, err := s.TempFile()
		if err != nil {
			t.Fatal(err)
		}
		f.WriteString("half a transfer")
		f.Close()
	}
	if names := testutil.DirNames(t, s.TmpDir()); len(names) != 3 {
		t.Fatalf("tmp holds %v before restart, want 3 files", names)
	}
	s2, err := NewStore(dataDir)
	if err != nil {
		t.Fatal(err)
	}
	if names := testutil.DirNames(t, s2.TmpDir()); len(names) != 0 {
		t.Errorf("tmp holds %v after restart", names)
	}
	if _, ok := s2.Has(kept); !ok {
		t.Error("restart lost a stored blob")
	}
}

func TestStore_RemoveStaleTempsRemovesOnlyOld(t *testing.T) {
	s := newTestStore(t)
	mk := func(age time.Duration) string {
		f, err := s.TempFile()
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
	s.RemoveStaleTemps(time.Hour)
	names := testutil.DirNames(t, s.TmpDir())
	want := []string{young, fresh}
	slices.Sort(want)
	if !slices.Equal(names, want) {
		t.Errorf("after RemoveStaleTemps tmp holds %v, want %v (old %s removed)", names, want, old)
	}
}

func TestStore_RefusesInvalidDigests(t *testing.T) {
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
			s, err := NewStore(dataDir)
			if err != nil {
				t.Fatal(err)
			}
			// A file the digest would reach if it were used as a path.
			victim := filepath.Join(dataDir, "node-id")
			if err := os.WriteFile(victim, []byte("id"), 0o600); err != nil {
				t.Fatal(err)
			}
			if _, ok := s.Has(tc.digest); ok {
				t.Error("Has accepted the digest")
			}
			tmp, _, _, err := s.Ingest(strings.NewReader("payload"), 100)
			if err != nil {
				t.Fatal(err)
			}
			if err := s.Commit(tmp, tc.digest); structs.ErrorCode(err) != structs.CodeInvalid {
				t.Errorf("Commit: err %v, want an invalid digest error", err)
			}
			if _, err := os.Stat(tmp); !errors.Is(err, os.ErrNotExist) {
				t.Error("a refused Commit left its temporary file")
			}
			if err := s.Remove(tc.digest); structs.ErrorCode(err) != structs.CodeInvalid {
				t.Errorf("Remove: err %v, want an invalid digest error", err)
			}
			if b, err := os.ReadFile(victim); err != nil || string(b) != "id" {
				t.Errorf("file outside the store touched: %q %v", b, err)
			}
			if names := testutil.DirNames(t, s.shaDir()); len(names) != 0 {
				t.Errorf("sha256 dir holds %v", names)
			}
		})
	}
}

// Collect removes a blob only when nothing references it and its grace
// period has passed; everything else in the store is left alone.
func TestStore_CollectRemovesUnreferencedOld(t *testing.T) {
	const grace = time.Hour
	now := time.Now()
	cases := []struct {
		name       string
		referenced bool
		age        time.Duration
		removed    bool
	}{
		{"unreferenced and old", false, 2 * grace, true},
		{"unreferenced, just at the grace", false, grace, true},
		{"referenced and old", true, 2 * grace, false},
		{"unreferenced and young", false, grace / 2, false},
		{"unreferenced and fresh", false, 0, false},
		{"referenced and young", true, time.Minute, false},
	}
	s := newTestStore(t)
	// Not blobs: Collect neither removes them nor asks about them.
	readme := filepath.Join(s.shaDir(), "README")
	if err := os.WriteFile(readme, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chtimes(readme, now.Add(-2*grace), now.Add(-2*grace)); err != nil {
		t.Fatal(err)
	}
	tmp, err := s.TempFile()
	if err != nil {
		t.Fatal(err)
	}
	tmp.Close()
	if err := os.Chtimes(tmp.Name(), now.Add(-2*grace), now.Add(-2*grace)); err != nil {
		t.Fatal(err)
	}

	digests := make([]string, len(cases))
	referenced := map[string]bool{}
	wantRemoved := 0
	for i, tc := range cases {
		digests[i] = storeBlob(t, s, []byte(tc.name))
		at := now.Add(-tc.age)
		if err := os.Chtimes(s.Path(digests[i]), at, at); err != nil {
			t.Fatal(err)
		}
		if tc.referenced {
			referenced[digests[i]] = true
		}
		if tc.removed {
			wantRemoved++
		}
	}
	var asked []string
	isReferenced := func(digest string) bool {
		asked = append(asked, digest)
		return referenced[digest]
	}

	n, err := s.Collect(isReferenced, grace, now)
	if err != nil {
		t.Fatalf("Collect: %v", err)
	}
	if n != wantRemoved {
		t.Errorf("Collect removed %d blobs, want %d", n, wantRemoved)
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if _, ok := s.Has(digests[i]); ok == tc.removed {
				t.Errorf("stored after Collect: %v, want %v", ok, !tc.removed)
			}
		})
	}
	for _, d := range asked {
		if structs.ValidateDigest("digest", d) != nil {
			t.Errorf("Collect asked whether %q, not a blob, is referenced", d)
		}
	}
	if _, err := os.Stat(readme); err != nil {
		t.Errorf("Collect touched a file that is not a blob: %v", err)
	}
	if _, err := os.Stat(tmp.Name()); err != nil {
		t.Errorf("Collect touched a temporary file: %v", err)
	}

	// What is left stays: a second pass removes nothing.
	if n, err := s.Collect(isReferenced, grace, now); err != nil || n != 0 {
		t.Errorf("second Collect: removed %d, err %v; want 0, nil", n, err)
	}
}

func TestStore_CollectEmptyStore(t *testing.T) {
	s := newTestStore(t)
	n, err := s.Collect(func(string) bool { return false }, 0, time.Now())
	if err != nil || n != 0 {
		t.Errorf("Collect on an empty store: %d, %v", n, err)
	}
}
