package structs

import (
	"fmt"
	"slices"
)

// MessageType selects the handler of a Raft log entry. It is append-only: a
// number, once shipped, keeps its meaning forever, because old log entries and
// snapshots hold it. Numbers 1-127 are divided into ranges, one per capability
// (TypeRange); a capability declares its types with their names in one place,
// in its own file, and registration refuses a number outside its range.
type MessageType uint8

// IgnoreUnknownFlag, set on a MessageType, lets an older node skip an entry it does
// not know instead of stopping. Use it for entries that only add optional state.
const IgnoreUnknownFlag MessageType = 128

// TypeRange is the block of MessageType numbers reserved for one capability.
// Ranges never move: a capability that fills its range takes a new range from
// the unassigned numbers, it does not renumber.
type TypeRange struct {
	Name        string
	First, Last MessageType
}

// Contains reports whether t (without IgnoreUnknownFlag) lies in r.
func (r TypeRange) Contains(t MessageType) bool { return t >= r.First && t <= r.Last }

func (r TypeRange) String() string { return fmt.Sprintf("%s (%d-%d)", r.Name, r.First, r.Last) }

// The reserved ranges (DESIGN.md §1: "MessageType ranges per capability"). 0
// is never a type; 127 is unassigned; 128 and above carry IgnoreUnknownFlag.
var (
	// RangeRegistry holds the registry core: nodes, models, and BatchType.
	RangeRegistry = TypeRange{Name: "registry", First: 1, Last: 6}
	// RangeServing holds versions, deployments, allocations, and access
	// control, whose types (15-19) were numbered in it before ranges were
	// written down.
	RangeServing = TypeRange{Name: "serving", First: 7, Last: 31}
	// RangeTraining holds jobs, experiments and runs.
	RangeTraining = TypeRange{Name: "training", First: 32, Last: 63}
	// RangeData holds datasets, sources and features.
	RangeData = TypeRange{Name: "data", First: 64, Last: 95}
	// RangePipelines holds pipelines, schedules and monitoring.
	RangePipelines = TypeRange{Name: "pipelines", First: 96, Last: 126}
)

// typeRanges lists every range, in order; registration accepts only these.
var typeRanges = []TypeRange{RangeRegistry, RangeServing, RangeTraining, RangeData, RangePipelines}

// TypeRanges returns the reserved ranges in ascending order.
func TypeRanges() []TypeRange { return slices.Clone(typeRanges) }

// TypeDef names one message type. Names are snake_case; they appear in logs
// and errors, never on the wire.
type TypeDef struct {
	Type MessageType
	Name string
}

// typeRegistry maps message type numbers to names. Its zero value is empty and
// ready, so declarations in any file may register into it during package
// initialisation, in whatever order the files are initialised.
type typeRegistry struct {
	names [IgnoreUnknownFlag]string
}

// messageTypes is every message type this build knows.
var messageTypes typeRegistry

// registerTypes declares a capability's message types. It panics (at init, so
// a binary with a clash never starts) on a number outside r, on a number or a
// name already registered, on an empty name, and on a range that is not one of
// the reserved ones. It returns true so that it can initialise a package-level
// blank variable: var _ = registerTypes(...).
func registerTypes(r TypeRange, defs ...TypeDef) bool {
	messageTypes.register(r, defs...)
	return true
}

func (reg *typeRegistry) register(r TypeRange, defs ...TypeDef) {
	if !slices.Contains(typeRanges, r) {
		panic(fmt.Sprintf("structs: message types registered under %v, which is not a reserved range", r))
	}
	for _, d := range defs {
		switch {
		case d.Name == "":
			panic(fmt.Sprintf("structs: message type %d has no name", uint8(d.Type)))
		case !r.Contains(d.Type):
			panic(fmt.Sprintf("structs: message type %s = %d lies outside the %v range", d.Name, uint8(d.Type), r))
		case reg.names[d.Type] != "":
			panic(fmt.Sprintf("structs: message type %d registered twice (%s and %s)", uint8(d.Type), reg.names[d.Type], d.Name))
		}
		if i := slices.Index(reg.names[:], d.Name); i >= 0 {
			panic(fmt.Sprintf("structs: message type name %q registered twice (%d and %d)", d.Name, i, uint8(d.Type)))
		}
		reg.names[d.Type] = d.Name
	}
}

func (reg *typeRegistry) name(t MessageType) string {
	if t >= IgnoreUnknownFlag {
		return ""
	}
	return reg.names[t]
}

// types lists the registered types in ascending order.
func (reg *typeRegistry) types() []MessageType {
	var out []MessageType
	for i, n := range reg.names {
		if n != "" {
			out = append(out, MessageType(i))
		}
	}
	return out
}

// MessageTypes returns every message type this build knows, in ascending
// order, without IgnoreUnknownFlag. BatchType is among them.
func MessageTypes() []MessageType { return messageTypes.types() }

// String names a message type for logs and errors: its registered name
// (whether or not IgnoreUnknownFlag is set), else "message_type(N)" with N the
// whole byte.
func (t MessageType) String() string {
	if name := messageTypes.name(t &^ IgnoreUnknownFlag); name != "" {
		return name
	}
	return fmt.Sprintf("message_type(%d)", uint8(t))
}

// Known reports whether this build can apply entries of type t: a registered
// type, or any type carrying IgnoreUnknownFlag (which Apply skips).
func (t MessageType) Known() bool {
	if t&IgnoreUnknownFlag != 0 {
		return true
	}
	return messageTypes.name(t) != ""
}
