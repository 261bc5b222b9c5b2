package node

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/kilnml/kiln/raftfsm/structs"
)

// blobStore keeps content-addressed artifacts under data_dir/blobs (DESIGN.md
// §3): sha256/<digest> holds a complete, verified blob; tmp/ holds uploads and
// transfers in progress. A blob appears under sha256/ only by rename after its
// digest was checked, so a reader never sees a partial file. Blobs never go
// through Raft; the registry records which nodes hold them.
type blobStore struct {
	dir string
}

func newBlobStore(dataDir string) (*blobStore, error) {
	s := &blobStore{dir: filepath.Join(dataDir, "blobs")}
	for _, d := range []string{s.shaDir(), s.tmpDir()} {
		if err := os.MkdirAll(d, 0o750); err != nil {
			return nil, fmt.Errorf("node: blobs: %w", err)
		}
	}
	// Whatever was in flight when the node stopped is of no use now.
	entries, _ := os.ReadDir(s.tmpDir())
	for _, e := range entries {
		_ = os.Remove(filepath.Join(s.tmpDir(), e.Name()))
	}
	return s, nil
}

func (s *blobStore) shaDir() string { return filepath.Join(s.dir, "sha256") }
func (s *blobStore) tmpDir() string { return filepath.Join(s.dir, "tmp") }

// path is where the blob with digest lives once stored. The digest must have
// been validated: it becomes a file name.
func (s *blobStore) path(digest string) string { return filepath.Join(s.shaDir(), digest) }

// has reports whether the blob is stored, and its size.
func (s *blobStore) has(digest string) (int64, bool) {
	if structs.ValidateDigest("digest", digest) != nil {
		return 0, false
	}
	fi, err := os.Stat(s.path(digest))
	if err != nil || !fi.Mode().IsRegular() {
		return 0, false
	}
	return fi.Size(), true
}

// tempFile creates a file in tmp/ for an upload or a transfer.
func (s *blobStore) tempFile() (*os.File, error) {
	var b [8]byte
	_, _ = rand.Read(b[:])
	f, err := os.OpenFile(filepath.Join(s.tmpDir(), hex.EncodeToString(b[:])), os.O_CREATE|os.O_EXCL|os.O_RDWR, 0o640)
	if err != nil {
		return nil, fmt.Errorf("node: blobs: %w", err)
	}
	return f, nil
}

// errBlobTooLarge is returned by ingest when the stream is longer than allowed.
var errBlobTooLarge = errors.New("node: blob larger than the limit")

// ingest streams r into a temporary file while hashing it, never holding more
// than a buffer in memory. It returns the temporary path, the digest and the
// size; the caller commits or removes the file. More than limit bytes fail with
// errBlobTooLarge.
func (s *blobStore) ingest(r io.Reader, limit int64) (tmp, digest string, size int64, err error) {
	f, err := s.tempFile()
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
		return "", "", 0, errBlobTooLarge
	}
	if err := f.Sync(); err != nil {
		return "", "", 0, err
	}
	return f.Name(), hex.EncodeToString(h.Sum(nil)), n, nil
}

// commit moves a verified temporary file into place under its digest. If the
// blob is already stored, the temporary file is dropped and the stored one's
// time refreshed, so the collector's grace period starts again.
func (s *blobStore) commit(tmp, digest string) error {
	if err := structs.ValidateDigest("digest", digest); err != nil {
		_ = os.Remove(tmp)
		return err
	}
	dst := s.path(digest)
	if _, ok := s.has(digest); ok {
		_ = os.Remove(tmp)
		now := time.Now()
		_ = os.Chtimes(dst, now, now)
		return nil
	}
	if err := os.Rename(tmp, dst); err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("node: blobs: %w", err)
	}
	return syncDir(s.shaDir())
}

// remove deletes a stored blob.
func (s *blobStore) remove(digest string) error {
	if err := structs.ValidateDigest("digest", digest); err != nil {
		return err
	}
	err := os.Remove(s.path(digest))
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	return err
}

// storedBlob is one entry of list.
type storedBlob struct {
	digest  string
	size    int64
	modTime time.Time
}

// list returns the stored blobs.
func (s *blobStore) list() ([]storedBlob, error) {
	entries, err := os.ReadDir(s.shaDir())
	if err != nil {
		return nil, err
	}
	out := make([]storedBlob, 0, len(entries))
	for _, e := range entries {
		if structs.ValidateDigest("digest", e.Name()) != nil {
			continue
		}
		fi, err := e.Info()
		if err != nil || !fi.Mode().IsRegular() {
			continue
		}
		out = append(out, storedBlob{digest: e.Name(), size: fi.Size(), modTime: fi.ModTime()})
	}
	return out, nil
}

// staleTemps removes temporary files older than age: transfers whose sender
// went away.
func (s *blobStore) staleTemps(age time.Duration) {
	entries, _ := os.ReadDir(s.tmpDir())
	for _, e := range entries {
		if fi, err := e.Info(); err == nil && time.Since(fi.ModTime()) > age && !strings.HasPrefix(e.Name(), ".") {
			_ = os.Remove(filepath.Join(s.tmpDir(), e.Name()))
		}
	}
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
