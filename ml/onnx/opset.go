package onnx

import (
	"fmt"
	"slices"
	"strings"

	pb "github.com/advancedclimatesystems/gonnx/onnx"
	"github.com/advancedclimatesystems/gonnx/ops/opset13"

	"github.com/kilnml/kiln/ml"
)

// Opsets of the default (ai.onnx) domain this runtime takes. gonnx v1.1.0
// implements opset 13 and nothing else (its opset.go registers one getter);
// a model of opset 14 to 17 is run as opset 13 when every op it uses is
// unchanged since 13 in the ways that matter (see changedAfter13).
const (
	runOpset        = 13
	maxRewriteOpset = 17
	// maxMLOpset is the newest ai.onnx.ml opset in ONNX's Changelog-ml.md
	// (version 5); Scaler and LinearRegressor, the two ai.onnx.ml ops gonnx
	// implements, are still at their version 1 there.
	maxMLOpset = 5
)

const (
	domainDefault = ""
	domainAlias   = "ai.onnx"
	domainML      = "ai.onnx.ml"
)

// mlOps are the ops gonnx implements that live in the ai.onnx.ml domain.
// gonnx looks ops up by type alone, so the domain is checked here.
var mlOps = map[string]bool{"Scaler": true, "LinearRegressor": true}

// opChange is one new version of an op in opsets 14 to 17, as ONNX's
// docs/Changelog.md ("Version N of the default ONNX operator set") records
// it. same reports whether a node written for the new version computes
// exactly what the op's opset-13 version computes; nil means it never does
// (the op is new, so it has no opset-13 version at all).
type opChange struct {
	since int
	what  string
	same  func(n *pb.NodeProto) bool
}

// changedAfter13 lists every op of the default domain that got a new version
// in opsets 14, 15, 16 or 17, taken from onnx/onnx docs/Changelog.md
// (sections "Version 14" to "Version 17" of the default operator set,
// checked against the version-13-or-older text of each op). An op not
// listed here has the same version at opsets 13 to 17, so running it as
// opset 13 changes nothing. The rules are deliberately narrow: an attribute
// added after 13 must be absent or set to the value that reproduces the old
// behaviour; a version that only widened the allowed types is the same op
// for the types gonnx runs (float, double and the older integer types).
var changedAfter13 = map[string][]opChange{
	// Opset 14.
	"Add":                {{14, "added uint8, int8, uint16, int16", anyNode}},
	"Sub":                {{14, "added uint8, int8, uint16, int16", anyNode}},
	"Mul":                {{14, "added uint8, int8, uint16, int16", anyNode}},
	"Div":                {{14, "added uint8, int8, uint16, int16", anyNode}},
	"Relu":               {{14, "added signed integer types", anyNode}},
	"CumSum":             {{14, "added float16, bfloat16", anyNode}},
	"Identity":           {{14, "added sequence types", anyNode}, {16, "added optional types", anyNode}},
	"Reshape":            {{14, "added attribute allowzero", intAttrIs("allowzero", 0)}},
	"GRU":                {{14, "added attribute layout", intAttrIs("layout", 0)}},
	"LSTM":               {{14, "added attribute layout", intAttrIs("layout", 0)}},
	"RNN":                {{14, "added attribute layout", intAttrIs("layout", 0)}},
	"BatchNormalization": {{14, "added attribute training_mode and dropped the saved_mean/saved_var outputs", batchNormInference}, {15, "let scale/B and mean/var differ in type", anyNode}},
	"HardSwish":          {{14, "new op", nil}},
	"Trilu":              {{14, "new op", nil}},
	// Opset 15.
	"Pow":                {{15, "added bfloat16 exponents", anyNode}},
	"Shape":              {{15, "added attributes start and end", attrsAbsent("start", "end")}},
	"Bernoulli":          {{15, "new op", nil}},
	"CastLike":           {{15, "new op", nil}},
	"Optional":           {{15, "new op", nil}},
	"OptionalGetElement": {{15, "new op", nil}},
	"OptionalHasElement": {{15, "new op", nil}},
	// Opset 16.
	"GreaterOrEqual":  {{16, "added bfloat16", anyNode}},
	"LessOrEqual":     {{16, "added bfloat16", anyNode}},
	"LeakyRelu":       {{16, "added bfloat16", anyNode}},
	"PRelu":           {{16, "added bfloat16", anyNode}},
	"Where":           {{16, "added bfloat16", anyNode}},
	"If":              {{16, "added bfloat16 and optional types", anyNode}},
	"Loop":            {{16, "added bfloat16 and optional types", anyNode}},
	"Scan":            {{16, "added bfloat16", anyNode}},
	"ScatterElements": {{16, "added attribute reduction", stringAttrIs("reduction", "none")}},
	"ScatterND":       {{16, "added attribute reduction", stringAttrIs("reduction", "none")}},
	// RoiAlign-16's default coordinate_transformation_mode (half_pixel) shifts
	// coordinates where RoiAlign-10 did not; only an explicit
	// output_half_pixel keeps the old behaviour.
	"RoiAlign":   {{16, "added attribute coordinate_transformation_mode (default half_pixel)", stringAttrSetTo("coordinate_transformation_mode", "output_half_pixel")}},
	"GridSample": {{16, "new op", nil}},
	// Opset 17: new ops only.
	"LayerNormalization": {{17, "new op", nil}},
	"SequenceMap":        {{17, "new op", nil}},
	"DFT":                {{17, "new op", nil}},
	"STFT":               {{17, "new op", nil}},
	"BlackmanWindow":     {{17, "new op", nil}},
	"HammingWindow":      {{17, "new op", nil}},
	"HannWindow":         {{17, "new op", nil}},
	"MelWeightMatrix":    {{17, "new op", nil}},
}

func anyNode(*pb.NodeProto) bool { return true }

// intAttrIs accepts a node whose attribute name is absent or equals want.
func intAttrIs(name string, want int64) func(*pb.NodeProto) bool {
	return func(n *pb.NodeProto) bool {
		a := attribute(n, name)
		return a == nil || a.GetI() == want
	}
}

// stringAttrIs accepts a node whose attribute name is absent or equals want.
func stringAttrIs(name, want string) func(*pb.NodeProto) bool {
	return func(n *pb.NodeProto) bool {
		a := attribute(n, name)
		return a == nil || string(a.GetS()) == want
	}
}

// stringAttrSetTo accepts a node whose attribute name is present and equals
// want (for an attribute whose default differs from the old behaviour).
func stringAttrSetTo(name, want string) func(*pb.NodeProto) bool {
	return func(n *pb.NodeProto) bool {
		a := attribute(n, name)
		return a != nil && string(a.GetS()) == want
	}
}

// attrsAbsent accepts a node that sets none of names.
func attrsAbsent(names ...string) func(*pb.NodeProto) bool {
	return func(n *pb.NodeProto) bool {
		for _, name := range names {
			if attribute(n, name) != nil {
				return false
			}
		}
		return true
	}
}

// batchNormInference accepts BatchNormalization in inference mode with the
// single output Y, where versions 9 and 14 agree.
func batchNormInference(n *pb.NodeProto) bool {
	outputs := 0
	for _, o := range n.GetOutput() {
		if o != "" {
			outputs++
		}
	}
	return intAttrIs("training_mode", 0)(n) && outputs == 1
}

func attribute(n *pb.NodeProto, name string) *pb.AttributeProto {
	for _, a := range n.GetAttribute() {
		if a.GetName() == name {
			return a
		}
	}
	return nil
}

// prepareOpsets checks the model's opset imports and every node of its graph
// (subgraphs included) against what gonnx runs, and rewrites the default
// domain's import to opset 13 where the model is of opset 14 to 17 and every
// op is the same at 13. It changes mp only when it returns nil.
func prepareOpsets(mp *pb.ModelProto) error {
	opset, mlOpset := int64(-1), int64(-1)
	for _, imp := range mp.GetOpsetImport() {
		switch imp.GetDomain() {
		case domainDefault, domainAlias:
			opset = imp.GetVersion()
		case domainML:
			mlOpset = imp.GetVersion()
		}
	}
	if opset == -1 {
		// A graph of ai.onnx.ml ops alone needs no default import; gonnx
		// still wants an opset it knows.
		opset = runOpset
	}
	if opset < runOpset || opset > maxRewriteOpset {
		return fmt.Errorf("%w: onnx: model uses opset %d of the default ONNX domain; this runtime runs opset %d, and opsets %d to %d where every op is unchanged since %d (re-export the model with opset %d)",
			ml.ErrBadModel, opset, runOpset, runOpset+1, maxRewriteOpset, runOpset, runOpset)
	}
	if mlOpset > maxMLOpset {
		return fmt.Errorf("%w: onnx: model uses opset %d of the ai.onnx.ml domain; this runtime knows versions 1 to %d", ml.ErrBadModel, mlOpset, maxMLOpset)
	}

	// Semantics first, over every graph, so that an op inside a subgraph
	// that changed after 13 is named even when its parent op (If, Loop,
	// Scan) is one gonnx lacks anyway.
	var walkErr error
	walkNodes(mp.GetGraph(), func(n *pb.NodeProto) bool {
		walkErr = checkSemantics(n, opset, mlOpset)
		return walkErr == nil
	})
	if walkErr != nil {
		return walkErr
	}
	walkNodes(mp.GetGraph(), func(n *pb.NodeProto) bool {
		if _, err := opset13.GetOperator(n.GetOpType()); err != nil {
			walkErr = fmt.Errorf("%w: onnx: op %s is not implemented by gonnx (opset %d)", ml.ErrBadModel, n.GetOpType(), runOpset)
		}
		return walkErr == nil
	})
	if walkErr != nil {
		return walkErr
	}

	// gonnx picks its op set from the highest version among all imports, so
	// the rewritten list holds the default domain at 13 and only the other
	// domains the graph uses (ai.onnx.ml at most, whose versions are < 13).
	imports := []*pb.OperatorSetIdProto{{Domain: domainDefault, Version: runOpset}}
	if mlOpset != -1 {
		imports = append(imports, &pb.OperatorSetIdProto{Domain: domainML, Version: mlOpset})
	}
	mp.OpsetImport = imports
	return nil
}

// checkSemantics decides whether the opset-13 version of node n's op
// computes what n means at the model's opset, and whether its domain is one
// gonnx serves.
func checkSemantics(n *pb.NodeProto, opset, mlOpset int64) error {
	op := n.GetOpType()
	switch n.GetDomain() {
	case domainDefault, domainAlias:
		if mlOps[op] {
			return fmt.Errorf("%w: onnx: op %s is an ai.onnx.ml op but the node puts it in the default domain", ml.ErrBadModel, op)
		}
		for _, c := range changedAfter13[op] {
			if int64(c.since) > opset {
				continue
			}
			if c.same == nil {
				return fmt.Errorf("%w: onnx: op %s (opset %d) has no opset-%d equivalent: %s-%d is a %s", ml.ErrBadModel, op, opset, runOpset, op, c.since, c.what)
			}
			if !c.same(n) {
				return fmt.Errorf("%w: onnx: op %s (opset %d) has no opset-%d equivalent: %s-%d %s, and node %q does not keep the opset-%d behaviour (%s)",
					ml.ErrBadModel, op, opset, runOpset, op, c.since, c.what, n.GetName(), runOpset, describeAttributes(n))
			}
		}
	case domainML:
		if mlOpset == -1 {
			return fmt.Errorf("%w: onnx: op %s is in the ai.onnx.ml domain, which the model does not import", ml.ErrBadModel, op)
		}
		if !mlOps[op] {
			return fmt.Errorf("%w: onnx: op ai.onnx.ml.%s is not implemented by gonnx (it has %s)", ml.ErrBadModel, op, strings.Join(sortedKeys(mlOps), ", "))
		}
	default:
		return fmt.Errorf("%w: onnx: op %s of domain %q is not supported; gonnx runs the default ONNX domain and ai.onnx.ml", ml.ErrBadModel, op, n.GetDomain())
	}
	return nil
}

// walkNodes calls f on every node of g and of its subgraphs, depth first,
// until f returns false.
func walkNodes(g *pb.GraphProto, f func(*pb.NodeProto) bool) bool {
	for _, n := range g.GetNode() {
		if !f(n) {
			return false
		}
		for _, a := range n.GetAttribute() {
			if a.GetG() != nil && !walkNodes(a.GetG(), f) {
				return false
			}
			for _, sub := range a.GetGraphs() {
				if !walkNodes(sub, f) {
					return false
				}
			}
		}
	}
	return true
}

func describeAttributes(n *pb.NodeProto) string {
	var parts []string
	for _, a := range n.GetAttribute() {
		switch a.GetType() {
		case pb.AttributeProto_INT:
			parts = append(parts, fmt.Sprintf("%s=%d", a.GetName(), a.GetI()))
		case pb.AttributeProto_STRING:
			parts = append(parts, fmt.Sprintf("%s=%q", a.GetName(), a.GetS()))
		default:
			parts = append(parts, a.GetName())
		}
	}
	if len(parts) == 0 {
		return "no attributes"
	}
	return strings.Join(parts, ", ")
}

func sortedKeys(m map[string]bool) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
