package data

import (
	"fmt"
	"reflect"
	"slices"
	"time"

	"github.com/expr-lang/expr"
	"github.com/expr-lang/expr/vm"

	"github.com/kilnml/kiln/raftfsm/structs"
)

// View is a feature view compiled against its source's schema: what one
// record gives it is a structs.FeatureRow.
type View struct {
	Spec     *structs.FeatureView
	joinKeys []string
	// row features, in the view's order: a column, or a program.
	rowFeatures []rowFeature
	// aggCols are the columns the view's aggregations read, stored with
	// each row under their own names.
	aggCols []string
	// exprEnv is true when a program reads the record.
	exprEnv bool
}

type rowFeature struct {
	name string
	typ  string
	prog *vm.Program // nil: the column of the same name
}

// zeroOf is a value of each column type, for expr's type checker.
var zeroOf = map[string]any{
	"int": int64(0), "float": float64(0), "bool": false, "string": "", "timestamp": time.Time{},
}

// CompileView checks a view against its entity and its source's schema
// (structs.CheckViewColumns, which fills the types left out) and compiles
// its row expressions, whose result type must be the feature's type. The
// error names the feature.
func CompileView(v *structs.FeatureView, e *structs.Entity, schema map[string]string) (*View, error) {
	if err := structs.CheckViewColumns(v, e, schema); err != nil {
		return nil, err
	}
	env := make(map[string]any, len(schema))
	for col, typ := range schema {
		env[col] = zeroOf[typ]
	}
	cv := &View{Spec: v, joinKeys: e.JoinKeys}
	for i := range v.Features {
		f := &v.Features[i]
		switch {
		case f.Windowed():
			if _, col, _ := structs.ParseAggregation(f.Expr); col != "" && !slices.Contains(cv.aggCols, col) {
				cv.aggCols = append(cv.aggCols, col)
			}
		case f.Expr == "":
			cv.rowFeatures = append(cv.rowFeatures, rowFeature{name: f.Name, typ: f.Type})
		default:
			prog, err := expr.Compile(f.Expr, expr.Env(env))
			if err != nil {
				return nil, structs.Errorf(structs.CodeInvalid, "features[%d] (%s): expr %q: %v", i, f.Name, f.Expr, err)
			}
			if got := exprType(prog); got != "" && !structs.TypeAccepts(f.Type, got) {
				return nil, structs.Errorf(structs.CodeInvalid, "features[%d] (%s) is declared %s, but expr %q gives a %s", i, f.Name, f.Type, f.Expr, got)
			}
			cv.rowFeatures = append(cv.rowFeatures, rowFeature{name: f.Name, typ: f.Type, prog: prog})
			cv.exprEnv = true
		}
	}
	// A column an aggregation reads may share its name with a row feature;
	// the row feature's value is then the column's (a plain feature) and
	// the two agree. An expression feature may not shadow it.
	for _, col := range cv.aggCols {
		for _, rf := range cv.rowFeatures {
			if rf.name == col && rf.prog != nil {
				return nil, structs.Errorf(structs.CodeInvalid, "feature %s is an expression, but an aggregation reads the column %s: rename one", rf.name, col)
			}
		}
	}
	return cv, nil
}

// exprType is the column type an expression's result has, "" when the
// checker cannot tell (an interface).
func exprType(p *vm.Program) string {
	t := p.Node().Type()
	if t == nil {
		return ""
	}
	switch t.Kind() {
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "int"
	case reflect.Float32, reflect.Float64:
		return "float"
	case reflect.Bool:
		return "bool"
	case reflect.String:
		return "string"
	}
	if t == reflect.TypeOf(time.Time{}) {
		return "timestamp"
	}
	return ""
}

// Row computes the view's row for one converted record. A record without
// an entity key or a timestamp is an error (the record goes to
// quarantine); an expression that fails on it (a null operand) gives a
// null value.
func (v *View) Row(rec Record) (structs.FeatureRow, error) {
	keys := make([]any, len(v.joinKeys))
	for i, k := range v.joinKeys {
		keys[i] = rec[k]
	}
	ek, err := structs.MakeEntityKey("join key "+fmt.Sprint(v.joinKeys), keys)
	if err != nil {
		return structs.FeatureRow{}, fmt.Errorf("feature view %s: %v", v.Spec.Name, err)
	}
	ts, ok := rec[v.Spec.TimestampColumn].(time.Time)
	if !ok {
		return structs.FeatureRow{}, fmt.Errorf("feature view %s: timestamp column %s is null", v.Spec.Name, v.Spec.TimestampColumn)
	}
	vals := make(map[string]any, len(v.rowFeatures)+len(v.aggCols))
	for _, col := range v.aggCols {
		vals[col] = rec[col]
	}
	for _, f := range v.rowFeatures {
		if f.prog == nil {
			vals[f.name] = asType(f.typ, rec[f.name])
			continue
		}
		out, err := expr.Run(f.prog, map[string]any(rec))
		if err != nil {
			vals[f.name] = nil
			continue
		}
		vals[f.name] = asType(f.typ, out)
	}
	return structs.FeatureRow{View: v.Spec.Name, Entity: ek, TS: ts.UnixNano(), Values: vals}, nil
}

// asType turns an expression's result into the feature's type: any integer
// into int64, a number into float64 for a float feature; a value of another
// type is null.
func asType(typ string, v any) any {
	if v == nil {
		return nil
	}
	rv := reflect.ValueOf(v)
	switch typ {
	case "int":
		switch rv.Kind() {
		case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
			return rv.Int()
		case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
			return int64(rv.Uint())
		}
	case "float":
		switch rv.Kind() {
		case reflect.Float32, reflect.Float64:
			return rv.Float()
		case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
			return float64(rv.Int())
		case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
			return float64(rv.Uint())
		}
	case "bool":
		if b, ok := v.(bool); ok {
			return b
		}
	case "string":
		if s, ok := v.(string); ok {
			return s
		}
	case "timestamp":
		if t, ok := v.(time.Time); ok {
			return t.UTC()
		}
	}
	return nil
}
