package raftfsm

import (
	"bufio"
	"bytes"
	"errors"
	"hash/crc32"
	"strings"
	"testing"

	"github.com/vmihailenco/msgpack/v5"

	"github.com/kilnml/kiln/raftfsm/structs"
)

// Accessor IDs and secret hashes of the tokens fullSource makes.
var (
	bootAccessor   = strings.Repeat("a", 32)
	readerAccessor = strings.Repeat("b", 32)
)

// fullSource gives f one or more records of every entity, as the API would
// write them: models with aliases, versions, nodes, deployments, allocations
// with IDs from structs.NewID, an ACL bootstrap, a policy and a token, and
// a source with a feature view, a service and values.
func fullSource(t testing.TB, f *FSM) {
	t.Helper()
	mustApply(t, f, 1, irisSetup(t,
		setAlias(t, "iris", "champion", 2),
		createModel(t, "wine", nil),
		encodeVersion(t, processVersion("wine")),
		putDeployment(t, "iris", shadowed(trafficOf(split(1, 80), split(2, 20)), 3)),
		planAllocs(t, []structs.Allocation{
			allocOf(structs.NewID(t0), "iris", 1, "node-1"),
			allocOf(structs.NewID(t0), "iris", 2, "node-2"),
		}),
		encode(t, structs.ACLBootstrapType, &structs.ACLBootstrapRequest{Token: structs.ACLToken{
			AccessorID: bootAccessor, SecretHash: structs.HashSecret("boot"),
			Policies: []string{structs.ManagementPolicy}, CreatedAt: t0,
		}}),
		encode(t, structs.ACLPolicyUpsertType, &structs.ACLPolicyUpsertRequest{Policy: structs.ACLPolicy{
			Name: "readers", Rules: `model "*" { policy = "read" }`, CreatedAt: t0, UpdatedAt: t0,
		}}),
		encode(t, structs.ACLTokenCreateType, &structs.ACLTokenCreateRequest{Token: structs.ACLToken{
			AccessorID: readerAccessor, SecretHash: structs.HashSecret("reader"),
			Policies: []string{"readers"}, CreatedAt: t0,
		}}),
		putSource(t, "txns", txnSchema),
		putEntity(t, "user", "user_id"),
		putView(t, txnView("24h")),
		encode(t, structs.FeatureServicePutType, &structs.FeatureServicePutRequest{Service: structs.FeatureService{Name: "fraud", Features: []string{"txn_stats:*"}, UpdatedAt: t0}}),
		putPipeline(t, twoSteps()),
		ingest(t, structs.SourceIngestRequest{Source: "txns", Advance: map[string]string{"": "1"}, Rows: []structs.FeatureRow{
			event{user: 1, ts: t0.UnixNano(), amount: 2.5, country: "fr"}.row(),
			event{user: 2, ts: t0.UnixNano(), amount: nil, country: "de"}.row(),
		}}),
	)...)
}

// streamFrame is one entity frame of a snapshot stream.
type streamFrame struct {
	typ frameType
	raw []byte
}

// splitStream returns the header and entity frames of a valid stream.
func splitStream(t testing.TB, stream []byte) (snapshotHeader, []streamFrame) {
	t.Helper()
	fr := newFrameReader(bytes.NewReader(stream))
	hdr, err := fr.header()
	if err != nil {
		t.Fatalf("header: %v", err)
	}
	var frames []streamFrame
	for {
		typ, raw, err := fr.next()
		if err != nil {
			t.Fatalf("frame: %v", err)
		}
		if typ == frameFooter {
			return hdr, frames
		}
		frames = append(frames, streamFrame{typ, bytes.Clone(raw)})
	}
}

// joinStream writes a stream with a correct footer, so that only the records
// can be wrong.
func joinStream(t testing.TB, hdr snapshotHeader, frames []streamFrame) []byte {
	t.Helper()
	var buf bytes.Buffer
	fw := &frameWriter{w: bufio.NewWriter(&buf), crc: crc32.New(castagnoli)}
	h, err := msgpack.Marshal(&hdr)
	must(t, err)
	must(t, fw.frame(frameHeader, h))
	for _, f := range frames {
		must(t, fw.frame(f.typ, f.raw))
	}
	ftr, err := msgpack.Marshal(&snapshotFooter{Records: uint64(len(frames)), CRC32: fw.crc.Sum32()})
	must(t, err)
	must(t, fw.w.WriteByte(byte(frameFooter)))
	_, err = fw.w.Write(ftr)
	must(t, err)
	must(t, fw.w.Flush())
	return buf.Bytes()
}

func recordFrame(t testing.TB, typ frameType, v interface{}) streamFrame {
	t.Helper()
	raw, err := encodeRecord(v)
	must(t, err)
	return streamFrame{typ, raw}
}

// withFrame returns frames with f inserted before the first frame of a later
// entity, where Persist would have written it.
func withFrame(frames []streamFrame, f streamFrame) []streamFrame {
	out := make([]streamFrame, 0, len(frames)+1)
	done := false
	for _, x := range frames {
		if !done && x.typ > f.typ {
			out, done = append(out, f), true
		}
		out = append(out, x)
	}
	if !done {
		out = append(out, f)
	}
	return out
}

// changeFirst returns frames with the first record of typ decoded into a T,
// changed by change and encoded again.
func changeFirst[T any](t testing.TB, frames []streamFrame, typ frameType, change func(*T)) []streamFrame {
	t.Helper()
	out := make([]streamFrame, len(frames))
	copy(out, frames)
	for i, f := range out {
		if f.typ != typ {
			continue
		}
		var v T
		must(t, structs.Decode(f.raw, &v))
		change(&v)
		out[i] = recordFrame(t, typ, &v)
		return out
	}
	t.Fatalf("no frame of type %d", typ)
	return nil
}

func TestValidateSnapshot_AcceptsWhatTheAPIWrites(t *testing.T) {
	tests := []struct {
		name string
		fill func(testing.TB, *FSM)
	}{
		{"empty", func(testing.TB, *FSM) {}},
		{"models and nodes", fillSource},
		{"every entity", fullSource},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			src := testFSM(t)
			tt.fill(t, src)
			stream := snapshotBytes(t, src)
			if err := ValidateSnapshot(bytes.NewReader(stream)); err != nil {
				t.Fatalf("ValidateSnapshot = %v", err)
			}
			// The stream reassembled by the test helpers is the same stream.
			hdr, frames := splitStream(t, stream)
			if again := joinStream(t, hdr, frames); !bytes.Equal(again, stream) {
				t.Fatal("splitStream/joinStream changed the stream")
			}
		})
	}
}

func TestValidateSnapshot_RefusesWhatTheAPIRefuses(t *testing.T) {
	src := testFSM(t)
	fullSource(t, src)
	hdr, good := splitStream(t, snapshotBytes(t, src))
	newAlloc := func(id, deployment string) structs.Allocation {
		a := allocOf(id, deployment, 1, "node-1")
		a.State = structs.AllocPending
		return a
	}

	tests := []struct {
		name    string
		frames  func(t *testing.T) []streamFrame
		wantErr string
	}{
		{"allocation id that is a path", func(t *testing.T) []streamFrame {
			return changeFirst(t, good, frameAlloc, func(a *structs.Allocation) { a.ID = "../../x" })
		}, `allocation "../../x": id "../../x" is not an ID`},
		{"allocation id that is not NewID's", func(t *testing.T) []streamFrame {
			return withFrame(good, recordFrame(t, frameAlloc, ptrTo(newAlloc("01j0a", "iris"))))
		}, `allocation "01j0a": id`},
		{"allocation in an unknown state", func(t *testing.T) []streamFrame {
			return changeFirst(t, good, frameAlloc, func(a *structs.Allocation) { a.State = "exploded" })
		}, `state "exploded" is not one of`},
		{"model with an invalid name", func(t *testing.T) []streamFrame {
			return withFrame(good, recordFrame(t, frameModel, &structs.Model{Name: "Not Valid", CreatedAt: t0}))
		}, `model "Not Valid": name "Not Valid" is invalid`},
		{"model with too many tags", func(t *testing.T) []streamFrame {
			return changeFirst(t, good, frameModel, func(m *structs.Model) {
				m.Tags = map[string]string{}
				for i := 0; i <= structs.MaxTags; i++ {
					m.Tags[strings.Repeat("k", i+1)] = "v"
				}
			})
		}, `model "iris": tags has 65 keys`},
		{"alias past the latest version", func(t *testing.T) []streamFrame {
			return changeFirst(t, good, frameModel, func(m *structs.Model) { m.Aliases["champion"] = 99 })
		}, `model "iris": alias "champion" names version 99; the latest is 3`},
		{"alias naming a deleted version", func(t *testing.T) []streamFrame {
			return changeFirst(t, good, frameModel, func(m *structs.Model) { m.LatestVersion, m.Aliases["champion"] = 9, 9 })
		}, `model "iris": alias "champion" names version 9, which the snapshot does not have`},
		{"version with a bad digest", func(t *testing.T) []streamFrame {
			return changeFirst(t, good, frameVersion, func(v *structs.ModelVersion) { v.Digest = "../blob" })
		}, `version "iris/1": digest "../blob" is not a sha256 digest`},
		{"version whose model is absent", func(t *testing.T) []streamFrame {
			v := linearVersion("ghost")
			v.Version = 1
			return withFrame(good, recordFrame(t, frameVersion, &v))
		}, `version "ghost/1": model "ghost" is not in the snapshot`},
		{"deployment with no replicas", func(t *testing.T) []streamFrame {
			return changeFirst(t, good, frameDeployment, func(d *structs.Deployment) { d.Replicas = 0 })
		}, `deployment "iris": replicas 0 is out of range`},
		{"deployment of a missing version", func(t *testing.T) []streamFrame {
			return changeFirst(t, good, frameDeployment, func(d *structs.Deployment) { d.Traffic.Shadow = 7 })
		}, `deployment "iris": traffic names version 7`},
		{"allocation whose deployment is absent", func(t *testing.T) []streamFrame {
			return withFrame(good, recordFrame(t, frameAlloc, ptrTo(newAlloc(structs.NewID(t0), "wine"))))
		}, `deployment "wine" is not in the snapshot`},
		{"policy whose rules do not parse", func(t *testing.T) []streamFrame {
			return withFrame(good, recordFrame(t, frameACLPolicy, &structs.ACLPolicy{Name: "broken", Rules: `model "*" {`}))
		}, `acl policy "broken": rules`},
		{"policy named management", func(t *testing.T) []streamFrame {
			return changeFirst(t, good, frameACLPolicy, func(p *structs.ACLPolicy) { p.Name = structs.ManagementPolicy })
		}, `acl policy "management": policy "management" is built in`},
		{"token without policies", func(t *testing.T) []streamFrame {
			return changeFirst(t, good, frameACLToken, func(tok *structs.ACLToken) { tok.Policies = nil })
		}, `acl token "` + readerAccessor + `": policies is required`}, // tokens sort by secret hash: the reader's first
		{"two tokens with one accessor", func(t *testing.T) []streamFrame {
			return withFrame(good, recordFrame(t, frameACLToken, &structs.ACLToken{
				AccessorID: readerAccessor, SecretHash: structs.HashSecret("other"), Policies: []string{"readers"},
			}))
		}, `acl token "` + readerAccessor + `": another token has the same accessor_id`},
		{"a record twice", func(t *testing.T) []streamFrame {
			for _, f := range good {
				if f.typ == frameNode {
					return withFrame(good, f)
				}
			}
			t.Fatal("no node")
			return nil
		}, `node "node-1" appears twice`},
		{"bootstrap at index 0", func(t *testing.T) []streamFrame {
			return changeFirst(t, good, frameACLBoot, func(s *structs.ACLBootstrapState) { s.Index = 0 })
		}, `acl bootstrap "bootstrap": index is 0`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			stream := joinStream(t, hdr, tt.frames(t))
			err := ValidateSnapshot(bytes.NewReader(stream))
			if !errors.Is(err, ErrInvalidSnapshot) || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("ValidateSnapshot = %v, want ErrInvalidSnapshot containing %q", err, tt.wantErr)
			}
		})
	}

	// Restore alone lets the worst of them through; that is why uploads are
	// validated.
	dst := testFSM(t)
	bad := joinStream(t, hdr, changeFirst(t, good, frameAlloc, func(a *structs.Allocation) { a.ID = "../../x" }))
	if err := restoreBytes(dst, bad); err != nil {
		t.Fatalf("Restore of a well-formed stream = %v", err)
	}
}

func ptrTo[T any](v T) *T { return &v }

func TestValidateSnapshot_CorruptStreams(t *testing.T) {
	src := testFSM(t)
	fullSource(t, src)
	good := snapshotBytes(t, src)
	flipped := bytes.Clone(good)
	flipped[len(flipped)/2] ^= 0x01
	tests := []struct {
		name   string
		stream []byte
	}{
		{"empty", nil},
		{"truncated", good[:len(good)-5]},
		{"bit flipped", flipped},
		{"trailing data", append(bytes.Clone(good), 0)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := ValidateSnapshot(bytes.NewReader(tt.stream)); !errors.Is(err, ErrCorruptSnapshot) {
				t.Fatalf("ValidateSnapshot = %v, want ErrCorruptSnapshot", err)
			}
		})
	}
}

func TestEntities_AllValidate(t *testing.T) {
	for _, e := range entities {
		if e.validate == nil || e.keyOf == nil {
			t.Errorf("entity %q lacks validate or keyOf", e.name)
		}
		if got, ok := entityByKey(e.prefix + "x"); !ok || got.frame != e.frame {
			t.Errorf("entityByKey(%q) = %q, want %q", e.prefix+"x", got.name, e.name)
		}
	}
}

func TestValidateID(t *testing.T) {
	for i := 0; i < 100; i++ {
		if id := structs.NewID(t0); structs.ValidateID("id", id) != nil {
			t.Fatalf("NewID gave %q, which ValidateID refuses", id)
		}
	}
	for _, id := range []string{
		"", "..", "../../x", "a/b", "01j0a",
		"01jx0000000000000000000000\x00",
		"81j0000000000000000000000a", // first character above 7
		"01J0000000000000000000000A", // upper case
		"01j000000000000000000000ia", // i is not in the alphabet
		"01j0000000000000000000000a/",
	} {
		if structs.ValidateID("id", id) == nil {
			t.Errorf("ValidateID(%q) = nil, want an error", id)
		}
	}
}

// FuzzValidateSnapshot feeds arbitrary streams to ValidateSnapshot: it never
// panics, and what it accepts Restore accepts too.
func FuzzValidateSnapshot(f *testing.F) {
	src := testFSM(f)
	fullSource(f, src)
	good := snapshotBytes(f, src)
	f.Add(good)
	f.Add(good[:len(good)-3])
	f.Add(good[:40])
	flipped := bytes.Clone(good)
	flipped[len(flipped)/3] ^= 0x10
	f.Add(flipped)
	f.Add([]byte{})
	f.Add([]byte{byte(frameHeader), 0x80})

	fsm := testFSM(f)
	f.Fuzz(func(t *testing.T, stream []byte) {
		if err := ValidateSnapshot(bytes.NewReader(stream)); err != nil {
			if !errors.Is(err, ErrCorruptSnapshot) && !errors.Is(err, ErrInvalidSnapshot) {
				t.Fatalf("ValidateSnapshot = %v, wrapping neither sentinel", err)
			}
			return
		}
		if err := restoreBytes(fsm, stream); err != nil {
			t.Fatalf("ValidateSnapshot accepted a stream Restore refuses: %v", err)
		}
	})
}
