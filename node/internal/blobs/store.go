package blobs

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/kilnml/kiln/raftfsm/structs"
)

// Store keeps content-addressed artifacts under data_dir/blobs (DESIGN.md
// §3): sha256/<digest> holds a complete, verified blob; tmp/ holds uploads and
// transfers in progress. A blob appears under sha256/ only by rename after its
// digest was checked, so a reader never sees a partial file. Blobs never go
// through Raft; the registry records which nodes hold them.
type Store struct {
	dir string
	// mu orders Commit against Collect's removal: a blob committed again
	// (its time refreshed) is never removed by a collection that listed it
	// as old just before.
	mu sync.Mutex
}

// NewStore opens the store under dataDir/blobs, creating it, and removes
// what was in progress when the node stopped.
func NewStore(dataDir string) (*Store, error) {
	s := &Store{dir: filepath.Join(dataDir, "blobs")}
	for _, d := range []string{s.shaDir(), s.TmpDir()} {
		if err := os.MkdirAll(d, 0o750); err != nil {
			return nil, fmt.Errorf("blobs: %w", err)
		}
	}
	// Whatever was in flight when the node stopped is of no use now.
	entries, _ := os.ReadDir(s.TmpDir())
	for _, e := range entries {
		_ = os.Remove(filepath.Join(s.TmpDir(), e.Name()))
	}
	return s, nil
}

func (s *Store) shaDir() string { return filepath.Join(s.dir, "sha256") }

// TmpDir holds uploads and transfers in progress.
func (s *Store) TmpDir() string { return filepath.Join(s.dir, "tmp") }

// Path is where the blob with digest lives once stored. The digest must have
// been validated: it becomes a file name.
func (s *Store) Path(digest string) string { return filepath.Join(s.shaDir(), digest) }

// Has reports whether the blob is stored, and its size.
func (s *Store) Has(digest string) (int64, bool) {
	if structs.ValidateDigest("digest", digest) != nil {
		return 0, false
	}
	fi, err := os.Stat(s.Path(digest))
	if err != nil || !fi.Mode().IsRegular() {
		return 0, false
	}
	return fi.Size(), true
}

// TempFile creates a file in tmp/ for an upload or a transfer.
func (s *Store) TempFile() (*os.File, error) {
	var b [8]byte
	_, _ = rand.Read(b[:])
	f, err := os.OpenFile(filepath.Join(s.TmpDir(), hex.EncodeToString(b[:])), os.O_CREATE|os.O_EXCL|os.O_RDWR, 0o640)
	if err != nil {
		return nil, fmt.Errorf("blobs: %w", err)
	}
	return f, nil
}

// ErrTooLarge is returned by Ingest when the stream is longer than allowed.
var ErrTooLarge = errors.New("blobs: blob larger than the limit")

// Ingest streams r into a temporary file while hashing it, never holding more
// than a buffer in memory. It returns the temporary path, the digest and the
// size; the caller commits or removes the file. More than limit bytes fail with
// ErrTooLarge.
func (s *Store) Ingest(r io.Reader, limit int64) (tmp, digest string, size int64, err error) {
	f, err := s.TempFile()
	if err != nil {
		return "", "", 0, err
	}
	defer func() {
		if cerr := f.Close(); err == nil && cerr != nil {
			err = cerr
		}
		if err != nil {
			_ = os.Remove(f.Name())
		}
	}()
	h := sha256.New()
	n, err := io.Copy(io.MultiWriter(f, h), io.LimitReader(r, limit+1))
	if err != nil {
		return "", "", 0, err
	}
	if n > limit {
		return "", "", 0, ErrTooLarge
	}
	if err := f.Sync(); err != nil {
		return "", "", 0, err
	}
	return f.Name(), hex.EncodeToString(h.Sum(nil)), n, nil
}

// Commit moves a verified temporary file into place under its digest. If the
// blob is already stored, the temporary file is dropped and the stored one's
// time refreshed, so the collector's grace period starts again.
func (s *Store) Commit(tmp, digest string) error {
	if err := structs.ValidateDigest("digest", digest); err != nil {
		_ = os.Remove(tmp)
		return err
	}
	dst := s.Path(digest)
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.Has(digest); ok {
		_ = os.Remove(tmp)
		now := time.Now()
		_ = os.Chtimes(dst, now, now)
		return nil
	}
	if err := os.Rename(tmp, dst); err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("blobs: %w", err)
	}
	return SyncDir(s.shaDir())
}

// PutBytes stores data held in memory (Ingest, then Commit) and returns its
// digest.
func (s *Store) PutBytes(data []byte) (string, error) {
	tmp, digest, _, err := s.Ingest(bytes.NewReader(data), int64(len(data)))
	if err != nil {
		return "", err
	}
	return digest, s.Commit(tmp, digest)
}

// Remove deletes a stored blob.
func (s *Store) Remove(digest string) error {
	if err := structs.ValidateDigest("digest", digest); err != nil {
		return err
	}
	err := os.Remove(s.Path(digest))
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	return err
}

// Stored is one entry of List.
type Stored struct {
	Digest  string
	Size    int64
	ModTime time.Time
}

// List returns the stored blobs.
func (s *Store) List() ([]Stored, error) {
	entries, err := os.ReadDir(s.shaDir())
	if err != nil {
		return nil, err
	}
	out := make([]Stored, 0, len(entries))
	for _, e := range entries {
		if structs.ValidateDigest("digest", e.Name()) != nil {
			continue
		}
		fi, err := e.Info()
		if err != nil || !fi.Mode().IsRegular() {
			continue
		}
		out = append(out, Stored{Digest: e.Name(), Size: fi.Size(), ModTime: fi.ModTime()})
	}
	return out, nil
}

// RemoveStaleTemps removes temporary files older than age: transfers whose sender
// went away.
func (s *Store) RemoveStaleTemps(age time.Duration) {
	entries, _ := os.ReadDir(s.TmpDir())
	for _, e := range entries {
		if fi, err := e.Info(); err == nil && time.Since(fi.ModTime()) > age && !strings.HasPrefix(e.Name(), ".") {
			_ = os.Remove(filepath.Join(s.TmpDir(), e.Name()))
		}
	}
}

// SyncDir makes a directory's entries durable (after a rename into it).
func SyncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// Collect removes the stored blobs that referenced says nothing needs and
// that are older than grace, and returns how many it removed. The grace
// covers a blob just received for a version not yet committed, or not yet
// applied by this node: its time is refreshed by every upload and transfer.
func (s *Store) Collect(referenced func(digest string) bool, grace time.Duration, now time.Time) (int, error) {
	stored, err := s.List()
	if err != nil {
		return 0, err
	}
	n := 0
	for _, b := range stored {
		if referenced(b.Digest) || now.Sub(b.ModTime) < grace {
			continue
		}
		removed, err := s.removeIfOlder(b.Digest, now.Add(-grace))
		if err != nil {
			return n, err
		}
		if removed {
			n++
		}
	}
	return n, nil
}

// removeIfOlder removes a blob whose time is still not after cutoff, under the
// lock Commit holds, so a blob committed again since it was listed stays.
func (s *Store) removeIfOlder(digest string, cutoff time.Time) (bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	fi, err := os.Stat(s.Path(digest))
	if err != nil || fi.ModTime().After(cutoff) {
		return false, nil
	}
	return true, s.Remove(digest)
}
