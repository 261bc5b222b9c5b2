package raftfsm

import (
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/kilnml/kiln/raftfsm/structs"
)

// Validation of snapshots from outside (DESIGN.md "Validating a snapshot"):
// Restore checks only what a record's key needs, so that the state raft hands
// it always loads; a snapshot an operator uploads is another matter: its
// records never went through Apply, and a crafted one could carry what the API
// refuses (an allocation ID that is a path, a policy that does not parse).
// ValidateSnapshot holds every record to the rules Apply holds a command to.

// ValidateSnapshot reads a whole snapshot stream (header, records, footer and
// checksum, as Restore does) and checks every record against the validation
// the API applies, then a few references between records: a version's model,
// an alias's version, a deployment's model and versions, an allocation's
// deployment. It changes nothing. A stream that does not parse returns an
// error wrapping ErrCorruptSnapshot; the first record that breaks a rule, an
// error wrapping ErrInvalidSnapshot that names the entity and the record.
func ValidateSnapshot(r io.Reader) error {
	fr := newFrameReader(r)
	if _, err := fr.header(); err != nil {
		return err
	}
	refs := newSnapshotRefs()
	seen := make(map[string]bool)
	err := fr.load(func(key string, raw []byte) error {
		e, ok := entityByKey(key)
		if !ok { // keyOf made the key, so this is a bug, not bad input
			return fmt.Errorf("raftfsm: validate snapshot: key %q has no entity", key)
		}
		if err := e.validate(raw); err != nil {
			return fmt.Errorf("%w: %s %v", ErrInvalidSnapshot, e.name, err)
		}
		if seen[key] {
			return fmt.Errorf("%w: %s %q appears twice", ErrInvalidSnapshot, e.name, strings.TrimPrefix(key, e.prefix))
		}
		seen[key] = true
		if err := refs.add(e, raw); err != nil {
			return fmt.Errorf("%w: %s %v", ErrInvalidSnapshot, e.name, err)
		}
		return nil
	})
	if err != nil {
		return err
	}
	return refs.check()
}

// entityByKey finds the entity whose prefix key has. No prefix is a prefix of
// another, so at most one matches.
func entityByKey(key string) (entity, bool) {
	for _, e := range entities {
		if strings.HasPrefix(key, e.prefix) {
			return e, true
		}
	}
	return entity{}, false
}

// recordError names the record that failed: the error reads
// `"<identity>": <what is wrong>` after the entity's name.
func recordError(id string, err error) error {
	return fmt.Errorf("%q: %w", id, err)
}

// The validate functions of entities. Each decodes one stored record and runs
// the checks Apply runs on the command that would have written it.

func validateNodeRecord(raw []byte) error {
	var n structs.Node
	if err := structs.Decode(raw, &n); err != nil {
		return err
	}
	if err := n.Validate(); err != nil {
		return recordError(n.ID, err)
	}
	return nil
}

func validateModelRecord(raw []byte) error {
	var m structs.Model
	if err := structs.Decode(raw, &m); err != nil {
		return err
	}
	if err := m.Validate(); err != nil {
		return recordError(m.Name, err)
	}
	// Aliases come from AliasSet, which checks the name and that the version
	// exists (refs checks that it still does).
	if len(m.Aliases) > structs.MaxAliases {
		return recordError(m.Name, structs.Errorf(structs.CodeInvalid, "aliases has %d entries, more than %d", len(m.Aliases), structs.MaxAliases))
	}
	for _, alias := range sortedAliasKeys(m.Aliases) {
		if err := structs.ValidateName("alias", alias); err != nil {
			return recordError(m.Name, err)
		}
		if v := m.Aliases[alias]; v == 0 || v > m.LatestVersion {
			return recordError(m.Name, structs.Errorf(structs.CodeInvalid, "alias %q names version %d; the latest is %d", alias, v, m.LatestVersion))
		}
	}
	return nil
}

func validateVersionRecord(raw []byte) error {
	var v structs.ModelVersion
	if err := structs.Decode(raw, &v); err != nil {
		return err
	}
	id := fmt.Sprintf("%s/%d", v.Model, v.Version)
	if err := v.Validate(); err != nil {
		return recordError(id, err)
	}
	if v.Version == 0 {
		return recordError(id, structs.Errorf(structs.CodeInvalid, "version is required (versions start at 1)"))
	}
	return nil
}

func validateDeploymentRecord(raw []byte) error {
	var d structs.Deployment
	if err := structs.Decode(raw, &d); err != nil {
		return err
	}
	if err := d.Validate(); err != nil {
		return recordError(d.Name, err)
	}
	if len(d.History) > structs.MaxRollbackHistory {
		return recordError(d.Name, structs.Errorf(structs.CodeInvalid, "history has %d entries, more than %d", len(d.History), structs.MaxRollbackHistory))
	}
	return nil
}

func validateAllocRecord(raw []byte) error {
	var a structs.Allocation
	if err := structs.Decode(raw, &a); err != nil {
		return err
	}
	if err := a.Validate(); err != nil {
		return recordError(a.ID, err)
	}
	return nil
}

// snapshotRefs collects what the references between records need, and checks
// them once every record has been read: a stream need not list entities in
// the order Persist writes them.
type snapshotRefs struct {
	latest      map[string]uint64 // model name -> latest version number
	versions    map[string]bool   // versionKey of every version
	deployments map[string]bool   // names
	accessors   map[string]bool   // token accessor IDs
	datasets    map[string]uint64 // dataset name -> latest version number

	// In stream order, so that the error names the first offender.
	versionList []*structs.ModelVersion
	models      []*structs.Model
	deployList  []*structs.Deployment
	allocs      []allocRef
	dsVersions  []*structs.DatasetVersion
}

type allocRef struct{ id, deployment string }

func newSnapshotRefs() *snapshotRefs {
	return &snapshotRefs{
		latest:      make(map[string]uint64),
		versions:    make(map[string]bool),
		deployments: make(map[string]bool),
		accessors:   make(map[string]bool),
		datasets:    make(map[string]uint64),
	}
}

// add records what raw, already validated as a record of e, refers to or is
// referred to as. A token whose accessor ID another token has is refused here.
func (s *snapshotRefs) add(e entity, raw []byte) error {
	switch e.frame {
	case frameModel:
		m := new(structs.Model)
		if err := structs.Decode(raw, m); err != nil {
			return err
		}
		s.latest[m.Name] = m.LatestVersion
		if len(m.Aliases) > 0 {
			s.models = append(s.models, m)
		}
	case frameVersion:
		v := new(structs.ModelVersion)
		if err := structs.Decode(raw, v); err != nil {
			return err
		}
		s.versions[versionKey(v.Model, v.Version)] = true
		s.versionList = append(s.versionList, &structs.ModelVersion{Model: v.Model, Version: v.Version})
	case frameDeployment:
		d := new(structs.Deployment)
		if err := structs.Decode(raw, d); err != nil {
			return err
		}
		s.deployments[d.Name] = true
		s.deployList = append(s.deployList, &structs.Deployment{Name: d.Name, Traffic: d.Traffic})
	case frameAlloc:
		var a structs.Allocation
		if err := structs.Decode(raw, &a); err != nil {
			return err
		}
		s.allocs = append(s.allocs, allocRef{id: a.ID, deployment: a.Deployment})
	case frameDataset:
		var d structs.Dataset
		if err := structs.Decode(raw, &d); err != nil {
			return err
		}
		s.datasets[d.Name] = d.LatestVersion
	case frameDatasetVer:
		var v structs.DatasetVersion
		if err := structs.Decode(raw, &v); err != nil {
			return err
		}
		s.dsVersions = append(s.dsVersions, &structs.DatasetVersion{Dataset: v.Dataset, Version: v.Version})
	case frameACLToken:
		var t structs.ACLToken
		if err := structs.Decode(raw, &t); err != nil {
			return err
		}
		if s.accessors[t.AccessorID] {
			return recordError(t.AccessorID, structs.Errorf(structs.CodeInvalid, "another token has the same accessor_id"))
		}
		s.accessors[t.AccessorID] = true
	}
	return nil
}

// check reports the first broken reference, entity by entity in snapshot
// order. Each holds in any state Apply builds: deleting a model deletes its
// versions and is refused while it is deployed, deleting a version removes
// its aliases and is refused while traffic goes to it, deleting a deployment
// deletes its allocations. (Tokens may name deleted policies, and
// allocations nodes that are gone: neither is checked.)
func (s *snapshotRefs) check() error {
	fail := func(entity, id, format string, args ...any) error {
		return fmt.Errorf("%w: %s %q: %s", ErrInvalidSnapshot, entity, id, fmt.Sprintf(format, args...))
	}
	for _, m := range s.models {
		for _, alias := range sortedAliasKeys(m.Aliases) {
			if v := m.Aliases[alias]; !s.versions[versionKey(m.Name, v)] {
				return fail("model", m.Name, "alias %q names version %d, which the snapshot does not have", alias, v)
			}
		}
	}
	for _, v := range s.versionList {
		latest, ok := s.latest[v.Model]
		if !ok {
			return fail("version", fmt.Sprintf("%s/%d", v.Model, v.Version), "model %q is not in the snapshot", v.Model)
		}
		if v.Version > latest {
			return fail("version", fmt.Sprintf("%s/%d", v.Model, v.Version), "model %q says its latest version is %d", v.Model, latest)
		}
	}
	for _, d := range s.deployList {
		if _, ok := s.latest[d.Name]; !ok {
			return fail("deployment", d.Name, "model %q is not in the snapshot", d.Name)
		}
		if i := slices.IndexFunc(d.Traffic.ServedVersions(), func(v uint64) bool { return !s.versions[versionKey(d.Name, v)] }); i >= 0 {
			return fail("deployment", d.Name, "traffic names version %d, which the snapshot does not have", d.Traffic.ServedVersions()[i])
		}
	}
	for _, a := range s.allocs {
		if !s.deployments[a.deployment] {
			return fail("allocation", a.id, "deployment %q is not in the snapshot", a.deployment)
		}
	}
	for _, v := range s.dsVersions {
		latest, ok := s.datasets[v.Dataset]
		if !ok {
			return fail("dataset version", v.Ref(), "dataset %q is not in the snapshot", v.Dataset)
		}
		if v.Version > latest {
			return fail("dataset version", v.Ref(), "dataset %q says its latest version is %d", v.Dataset, latest)
		}
	}
	return nil
}
