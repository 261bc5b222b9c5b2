package node

import (
	"bytes"
	"encoding/base64"
	"os"
	"path/filepath"
	"testing"

	"github.com/hashicorp/go-hclog"
)

func TestKeyring_SavedKeyringWinsOverConfig(t *testing.T) {
	dir := t.TempDir()
	cfgKey := bytes.Repeat([]byte{1}, 32)
	newKey := base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{2}, 32))
	log := hclog.NewNullLogger()

	if k, err := loadKeyring(dir, nil, log); err != nil || k != nil {
		t.Fatalf("no key, no file: %v %v, want no keyring", k, err)
	}
	k, err := loadKeyring(dir, cfgKey, log)
	if err != nil || !bytes.Equal(k.kr.GetPrimaryKey(), cfgKey) {
		t.Fatalf("first start: %v", err)
	}
	if fi, err := os.Stat(filepath.Join(dir, keyringFile)); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("saved keyring: %v %v, want mode 0600", fi, err)
	}
	for _, op := range []string{keyringInstall, keyringUse} {
		if _, err := k.apply(op, newKey); err != nil {
			t.Fatalf("%s: %v", op, err)
		}
	}
	if _, err := k.apply(keyringRemove, newKey); err == nil {
		t.Fatal("removed the primary key")
	}
	if _, err := k.apply(keyringRemove, base64.StdEncoding.EncodeToString(cfgKey)); err != nil {
		t.Fatal(err)
	}
	if _, err := k.apply(keyringInstall, "not base64!"); err == nil {
		t.Fatal("installed a bad key")
	}
	// Restarted with the same config: the saved keyring, not the config key.
	k2, err := loadKeyring(dir, cfgKey, log)
	if err != nil {
		t.Fatal(err)
	}
	st, _ := k2.apply(keyringList, "")
	if len(st.Keys) != 1 || st.Primary != newKey {
		t.Fatalf("after restart: %+v, want only the new key as primary", st)
	}
}
