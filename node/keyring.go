package node

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/memberlist"

	"github.com/kilnml/kiln/node/internal/blobs"
	"github.com/kilnml/kiln/raftfsm/structs"
	"github.com/kilnml/kiln/transport"
)

// Gossip key rotation. memberlist decrypts with any key of its keyring and
// encrypts with the primary, so a key is rotated with no downtime in three
// cluster-wide steps: install the new key on every node, make it the primary
// on every node, remove the old one. Each step is an RPC to every alive member
// (operator.keyring), answered per node; a step that some alive node did not
// apply fails and says which. The keyring is saved in the data dir whenever it
// changes and, once saved, takes precedence over the config's encrypt key, so
// a node restarted after a rotation still speaks the cluster's current key.

// keyringFile, in the data dir, holds the gossip keyring.
const keyringFile = "gossip-keyring.json"

type keyringOnDisk struct {
	Keys    []string `json:"keys"` // base64, primary first
	Primary string   `json:"primary"`
}

// keyring is the node's gossip keyring and where it is saved.
type keyring struct {
	path string
	kr   *memberlist.Keyring
	mu   sync.Mutex // serialises changes and saves
}

// loadKeyring returns the keyring to gossip with: the saved one if there is
// one, else one holding the config's key; nil without either (no encryption).
func loadKeyring(dataDir string, configKey []byte, logger hclog.Logger) (*keyring, error) {
	path := filepath.Join(dataDir, keyringFile)
	b, err := os.ReadFile(path)
	switch {
	case err == nil:
		var disk keyringOnDisk
		if err := json.Unmarshal(b, &disk); err != nil {
			return nil, fmt.Errorf("node: %s: %w", path, err)
		}
		var keys [][]byte
		for _, k := range disk.Keys {
			raw, err := decodeGossipKey(k)
			if err != nil {
				return nil, fmt.Errorf("node: %s: %w", path, err)
			}
			keys = append(keys, raw)
		}
		primary, err := decodeGossipKey(disk.Primary)
		if err != nil || len(keys) == 0 {
			return nil, fmt.Errorf("node: %s holds no usable primary key", path)
		}
		kr, err := memberlist.NewKeyring(keys, primary)
		if err != nil {
			return nil, fmt.Errorf("node: %s: %w", path, err)
		}
		logger.Info("gossip keyring loaded from the data dir; it takes precedence over encrypt", "path", path, "keys", len(keys))
		return &keyring{path: path, kr: kr}, nil
	case !errors.Is(err, os.ErrNotExist):
		return nil, fmt.Errorf("node: read %s: %w", path, err)
	case configKey == nil:
		return nil, nil
	}
	kr, err := memberlist.NewKeyring(nil, configKey)
	if err != nil {
		return nil, fmt.Errorf("node: encrypt: %w", err)
	}
	k := &keyring{path: path, kr: kr}
	logger.Info("gossip encrypted with the config's encrypt key")
	return k, k.save()
}

func decodeGossipKey(s string) ([]byte, error) {
	raw, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		return nil, fmt.Errorf("key is not base64: %v", err)
	}
	switch len(raw) {
	case 16, 24, 32:
		return raw, nil
	}
	return nil, fmt.Errorf("key must decode to 16, 24 or 32 bytes, got %d", len(raw))
}

// save writes the keyring atomically, readable by the agent's user alone.
func (k *keyring) save() error {
	disk := keyringOnDisk{Primary: base64.StdEncoding.EncodeToString(k.kr.GetPrimaryKey())}
	for _, key := range k.kr.GetKeys() {
		disk.Keys = append(disk.Keys, base64.StdEncoding.EncodeToString(key))
	}
	b, err := json.Marshal(disk)
	if err != nil {
		return err
	}
	// Synced before and after the rename: a keyring lost in a power cut
	// after a rotation would leave the node with a key nobody speaks any more,
	// and a torn file would keep it from starting.
	tmp := k.path + ".tmp"
	if err := writeFileSync(tmp, b, 0o600); err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("node: save keyring: %w", err)
	}
	if err := os.Rename(tmp, k.path); err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("node: save keyring: %w", err)
	}
	if err := blobs.SyncDir(filepath.Dir(k.path)); err != nil {
		return fmt.Errorf("node: save keyring: %w", err)
	}
	return nil
}

// writeFileSync writes b to a new file at path and syncs it to disk.
func writeFileSync(path string, b []byte, perm os.FileMode) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, perm)
	if err != nil {
		return err
	}
	if _, err := f.Write(b); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// Keyring operations.
const (
	keyringList    = "list"
	keyringInstall = "install"
	keyringUse     = "use"
	keyringRemove  = "remove"
)

// keyringState is one node's keyring, keys in base64.
type keyringState struct {
	Keys    []string `msgpack:"keys" json:"keys"`
	Primary string   `msgpack:"primary" json:"primary"`
}

// apply runs one operation on the local keyring and saves it.
func (k *keyring) apply(op, key string) (keyringState, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if op != keyringList {
		raw, err := decodeGossipKey(key)
		if err != nil {
			return keyringState{}, structs.Errorf(structs.CodeInvalid, "key: %v", err)
		}
		switch op {
		case keyringInstall:
			err = k.kr.AddKey(raw)
		case keyringUse:
			err = k.kr.UseKey(raw)
		case keyringRemove:
			err = k.kr.RemoveKey(raw)
		default:
			return keyringState{}, structs.Errorf(structs.CodeInvalid, "keyring operation %q is not list, install, use or remove", op)
		}
		if err != nil {
			return keyringState{}, structs.Errorf(structs.CodeConflict, "%s key %s: %v", op, keyHint(key), err)
		}
		if err := k.save(); err != nil {
			return keyringState{}, err
		}
	}
	st := keyringState{Primary: base64.StdEncoding.EncodeToString(k.kr.GetPrimaryKey())}
	for _, key := range k.kr.GetKeys() {
		st.Keys = append(st.Keys, base64.StdEncoding.EncodeToString(key))
	}
	return st, nil
}

// keyHint names a key in messages without giving it away.
func keyHint(key string) string {
	if len(key) > 6 {
		return fmt.Sprintf("%q...", key[:6])
	}
	return "(short)"
}

const rpcKeyring = "operator.keyring"

type keyringArgs struct {
	Op  string `msgpack:"op"`
	Key string `msgpack:"key"`
}

func (a *Agent) handleKeyringRPC(ctx context.Context, dec transport.Decoder) (any, error) {
	var args keyringArgs
	if err := dec.Decode(&args); err != nil {
		return nil, structs.Errorf(structs.CodeInvalid, "node: bad operator.keyring request: %v", err)
	}
	if a.keyring == nil {
		return nil, structs.Errorf(structs.CodeInvalid, "node %s: gossip encryption is off (no encrypt key)", a.cfg.NodeName)
	}
	st, err := a.keyring.apply(args.Op, args.Key)
	if err != nil {
		return nil, err
	}
	return &st, nil
}

// keyringNodeResult is one node's answer in a keyring response.
type keyringNodeResult struct {
	Node    string   `json:"node"`
	Keys    []string `json:"keys,omitempty"`
	Primary string   `json:"primary,omitempty"`
	Error   string   `json:"error,omitempty"`
}

// keyringKey is one key of GET /v1/operator/keyring: on how many nodes it is
// installed, and on how many it is the primary.
type keyringKey struct {
	Key       string `json:"key"`
	Installed int    `json:"installed"`
	Primary   int    `json:"primary"`
}

// handleKeyring runs a keyring operation on every alive member. A key is
// made primary only once every alive member has it installed, and the
// primary key of any member is never removed.
func (a *Agent) handleKeyring(op string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		var req struct {
			Key string `json:"key"`
		}
		if op != keyringList {
			if err := a.decodeBody(w, r, &req); err != nil {
				writeError(w, err)
				return
			}
			if _, err := decodeGossipKey(req.Key); err != nil {
				writeError(w, structs.Errorf(structs.CodeInvalid, "key: %v", err))
				return
			}
		}
		if a.keyring == nil {
			writeError(w, structs.Errorf(structs.CodeInvalid, "gossip encryption is off on this node (no encrypt key): there is no keyring to change"))
			return
		}
		if op == keyringUse || op == keyringRemove {
			nodes, failed := a.keyringFanOut(r.Context(), keyringList, "")
			if failed > 0 {
				writeKeyringFailure(w, keyringList, nodes, failed)
				return
			}
			for _, n := range nodes {
				if op == keyringUse && !slices.Contains(n.Keys, req.Key) {
					writeError(w, structs.Errorf(structs.CodeConflict, "key %s is not installed on node %s: install it everywhere before using it", keyHint(req.Key), n.Node))
					return
				}
				if op == keyringRemove && n.Primary == req.Key {
					writeError(w, structs.Errorf(structs.CodeConflict, "key %s is the primary key of node %s: use another key first", keyHint(req.Key), n.Node))
					return
				}
			}
		}
		nodes, failed := a.keyringFanOut(r.Context(), op, req.Key)
		if failed > 0 {
			writeKeyringFailure(w, op, nodes, failed)
			return
		}
		writeJSON(w, http.StatusOK, map[string]any{"nodes": nodes, "keys": summarizeKeys(nodes)})
	}
}

func writeKeyringFailure(w http.ResponseWriter, op string, nodes []keyringNodeResult, failed int) {
	var names []string
	for _, n := range nodes {
		if n.Error != "" {
			names = append(names, n.Node+": "+n.Error)
		}
	}
	writeJSON(w, http.StatusServiceUnavailable, map[string]any{
		"error": fmt.Sprintf("keyring %s failed on %d node(s): %s", op, failed, names),
		"code":  structs.CodeUnavailable, "nodes": nodes,
	})
}

// keyringFanOut runs op on every alive member at once, sorted by name, and
// counts the failures.
func (a *Agent) keyringFanOut(ctx context.Context, op, key string) ([]keyringNodeResult, int) {
	members := a.gossip.alive()
	out := make([]keyringNodeResult, len(members))
	var wg sync.WaitGroup
	for i, m := range members {
		wg.Go(func() {
			cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			defer cancel()
			var st keyringState
			err := a.trans.Call(cctx, m.Meta.RPCAddr, rpcKeyring, &keyringArgs{Op: op, Key: key}, &st)
			out[i] = keyringNodeResult{Node: m.Name, Keys: st.Keys, Primary: st.Primary}
			if err != nil {
				// Not fromTransport: its text speaks of the leader and of a
				// write's outcome, and neither applies here. A remote error
				// reads as the node's own message.
				out[i].Error = err.Error()
			}
		})
	}
	wg.Wait()
	failed := 0
	for _, n := range out {
		if n.Error != "" {
			failed++
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Node < out[j].Node })
	return out, failed
}

func summarizeKeys(nodes []keyringNodeResult) []keyringKey {
	byKey := map[string]*keyringKey{}
	var order []string
	for _, n := range nodes {
		for _, k := range n.Keys {
			if byKey[k] == nil {
				byKey[k] = &keyringKey{Key: k}
				order = append(order, k)
			}
			byKey[k].Installed++
			if n.Primary == k {
				byKey[k].Primary++
			}
		}
	}
	out := make([]keyringKey, 0, len(order))
	for _, k := range order {
		out = append(out, *byKey[k])
	}
	return out
}
