package main

import (
	"bytes"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"reflect"
	"slices"
	"strconv"
	"strings"

	"github.com/kilnml/kiln/node"
	"github.com/kilnml/kiln/raftfsm/structs"
)

// The features noun: declare sources, entities, feature views and feature
// services from an HCL file with a plan of what changes, list them, and
// read feature values online or as of points in time (DESIGN.md §8).

const featuresConnUsage = `
  Every features command takes -address, -token (or KILN_TOKEN), -format
  (table or json: json prints the node's answer), and the HTTPS flags
  -ca-cert, -client-cert, -client-key.`

// historicalBatchRows is how many entity rows one historical request
// carries, so that a large frame stays within the node's body limit.
// Each row is answered as of its own time, so batches change nothing.
const historicalBatchRows = 5000

func featuresCommands() map[string]*command {
	return map[string]*command{
		"features":            groupCommand("Declare feature views and services, read feature values", "kiln features <apply|list|get|historical>"),
		"features apply":      featuresApplyCommand(),
		"features list":       featuresListCommand(),
		"features get":        featuresGetCommand(),
		"features historical": featuresHistoricalCommand(),
	}
}

const featuresApplyHelp = `Usage: kiln features apply [flags] FILE.hcl

  Makes the node hold what FILE declares: sources, entities, feature views
  and feature services, in that order (each may name the ones before).
  First it prints a plan, comparing each object with the node's:

    + source txns                     created
    ~ feature_view txn_stats          changed, one line per field:
        ttl: "24h" -> "48h"
    = entity user (unchanged)

  then creates and updates what changed, stopping at the first refusal
  with the node's message. Objects the node holds but FILE does not name
  are left alone. FILE holds blocks such as:

    source "txns" {                   # the label is the name
      kind   = "push"                 # postgres, http, file, kafka, nats or push
      schema = { user_id = "int", ts = "timestamp", amount = "float" }
      expect "range" {
        column = "amount"
        min    = 0
      }
    }
    entity "user" {
      join_keys = ["user_id"]
    }
    feature_view "txn_stats" {
      entity           = "user"
      source           = "txns"
      timestamp_column = "ts"
      ttl              = "24h"        # older values are no values
      retain           = "90d"        # older values are deleted
      feature "amount" {}             # a column of the source
      feature "amount_cents" {        # a row expression
        type = "int"
        expr = "int(amount * 100)"
      }
      feature "amount_sum_1h" {       # an aggregation over a window
        expr   = "sum(amount)"
        window = "1h"
      }
    }
    feature_service "fraud" {
      features = ["txn_stats:amount", "txn_stats:*"]
    }

  kiln sources apply -help shows every source kind's block.

  -plan   print the plan only; change nothing` + featuresConnUsage

func featuresApplyCommand() *command {
	return &command{synopsis: "Create or update sources, entities, feature views and services from HCL", help: featuresApplyHelp, run: runFeaturesApply}
}

// readFeaturesFile reads an HCL features file.
func readFeaturesFile(path string) (*node.FeaturesFile, error) {
	src, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return node.ParseFeaturesHCL(src, path)
}

// Plan actions.
const (
	planCreate    = "create"
	planUpdate    = "update"
	planUnchanged = "unchanged"
)

// planStep is what apply does with one object of the file.
type planStep struct {
	Kind    string       `json:"kind"` // source, entity, feature_view, feature_service
	Name    string       `json:"name"`
	Action  string       `json:"action"`
	Changes []planChange `json:"changes,omitempty"`

	method, path string
	body         any
}

// planChange is one field an update changes, as JSON.
type planChange struct {
	Field string          `json:"field"`
	From  json.RawMessage `json:"from"`
	To    json.RawMessage `json:"to"`
}

// The bodies of the PUT requests; the current object is read into the
// same type, so that both sides are compared field by field as they would
// be sent.
type entityBody struct {
	JoinKeys    []string `json:"join_keys"`
	Description string   `json:"description"`
}

type featureViewBody struct {
	Entity          string            `json:"entity"`
	Source          string            `json:"source"`
	TimestampColumn string            `json:"timestamp_column"`
	Features        []structs.Feature `json:"features"`
	TTL             string            `json:"ttl"`
	Retain          string            `json:"retain"`
	Description     string            `json:"description"`
}

type featureServiceBody struct {
	Features    []string `json:"features"`
	Description string   `json:"description"`
}

func runFeaturesApply(args []string) int {
	fs, cf := newClientFlags("features apply")
	planOnly := fs.Bool("plan", false, "")
	c, err := connect(fs, cf, args, 1, featuresApplyHelp)
	if err != nil {
		return fail(err)
	}
	file, err := readFeaturesFile(fs.Arg(0))
	if err != nil {
		return fail(err)
	}
	steps, err := planFeatures(c, file)
	if err != nil {
		return fail(err)
	}
	if cf.format != "json" {
		printPlan(os.Stdout, steps)
	}
	if *planOnly {
		if cf.format == "json" {
			printJSON(map[string]any{"plan": steps})
		}
		return 0
	}
	applied := []planStep{}
	var applyErr error
	for _, s := range steps {
		if s.Action == planUnchanged {
			continue
		}
		if err := c.do(s.method, s.path, s.body, nil); err != nil {
			applyErr = fmt.Errorf("%s %s: %w", s.Kind, s.Name, err)
			break
		}
		applied = append(applied, s)
		if cf.format != "json" {
			verb := "Created"
			if s.Action == planUpdate {
				verb = "Updated"
			}
			fmt.Printf("%s %s %s\n", verb, s.Kind, s.Name)
		}
	}
	if cf.format == "json" {
		printJSON(map[string]any{"plan": steps, "applied": applied})
	} else if applyErr == nil {
		if len(applied) == 0 {
			fmt.Println("Nothing to apply.")
		} else {
			fmt.Printf("Applied %d of %d objects.\n", len(applied), len(steps))
		}
	}
	if applyErr != nil {
		return fail(applyErr)
	}
	return 0
}

// planFeatures reads the node's copy of every object of the file, in the
// order they are applied, and says what applying the file does to each.
func planFeatures(c *client, file *node.FeaturesFile) ([]planStep, error) {
	var steps []planStep
	for _, spec := range file.Sources {
		// The node fills the same defaults before it stores a spec.
		spec.Normalize()
		var cur struct {
			Spec *structs.SourceSpec `json:"spec"`
		}
		s := planStep{Kind: "source", Name: spec.Name, method: "POST", path: "/v1/sources", body: spec}
		found, err := getCurrent(c, "/v1/sources/"+url.PathEscape(spec.Name), &cur)
		if err != nil {
			return nil, err
		}
		if err := s.compare(found, cur.Spec, &spec); err != nil {
			return nil, err
		}
		steps = append(steps, s)
	}
	for _, e := range file.Entities {
		body := entityBody{JoinKeys: e.JoinKeys, Description: e.Description}
		path := "/v1/entities/" + url.PathEscape(e.Name)
		var cur entityBody
		found, err := getCurrent(c, path, &cur)
		if err != nil {
			return nil, err
		}
		s := planStep{Kind: "entity", Name: e.Name, method: "PUT", path: path, body: body}
		if err := s.compare(found, &cur, &body); err != nil {
			return nil, err
		}
		steps = append(steps, s)
	}
	for _, v := range file.Views {
		body := featureViewBody{Entity: v.Entity, Source: v.Source, TimestampColumn: v.TimestampColumn,
			Features: v.Features, TTL: v.TTL, Retain: v.Retain, Description: v.Description}
		path := "/v1/feature-views/" + url.PathEscape(v.Name)
		var cur featureViewBody
		found, err := getCurrent(c, path, &cur)
		if err != nil {
			return nil, err
		}
		s := planStep{Kind: "feature_view", Name: v.Name, method: "PUT", path: path, body: body}
		want := body
		want.Features = withCurrentTypes(body.Features, cur.Features)
		if err := s.compare(found, &cur, &want); err != nil {
			return nil, err
		}
		steps = append(steps, s)
	}
	for _, sv := range file.Services {
		body := featureServiceBody{Features: sv.Features, Description: sv.Description}
		path := "/v1/feature-services/" + url.PathEscape(sv.Name)
		var cur featureServiceBody
		found, err := getCurrent(c, path, &cur)
		if err != nil {
			return nil, err
		}
		s := planStep{Kind: "feature_service", Name: sv.Name, method: "PUT", path: path, body: body}
		if err := s.compare(found, &cur, &body); err != nil {
			return nil, err
		}
		steps = append(steps, s)
	}
	return steps, nil
}

// getCurrent reads an object into out; found is false when the node has
// none of that name.
func getCurrent(c *client, path string, out any) (found bool, err error) {
	err = c.do("GET", path, nil, out)
	var ae *apiError
	if errors.As(err, &ae) && ae.Status == http.StatusNotFound {
		return false, nil
	}
	return err == nil, err
}

// withCurrentTypes fills the type of each feature the file leaves untyped
// from the node's feature of the same name, expression and window: the
// node stores the type it inferred (the column's, the aggregation's), so
// that an untyped feature is not a change.
func withCurrentTypes(want, cur []structs.Feature) []structs.Feature {
	out := slices.Clone(want)
	for i, f := range out {
		if f.Type != "" {
			continue
		}
		for _, g := range cur {
			if g.Name == f.Name && g.Expr == f.Expr && g.Window == f.Window {
				out[i].Type = g.Type
			}
		}
	}
	return out
}

// compare sets the step's action from the node's object cur (when found)
// and the object the file wants, two pointers to one struct type: a field
// whose JSON differs is a change.
func (s *planStep) compare(found bool, cur, want any) error {
	if !found {
		s.Action = planCreate
		return nil
	}
	changes, err := jsonFieldChanges(cur, want)
	if err != nil {
		return err
	}
	s.Changes = changes
	s.Action = planUnchanged
	if len(changes) > 0 {
		s.Action = planUpdate
	}
	return nil
}

// jsonFieldChanges lists the fields of two structs of one type whose JSON
// differs, in the struct's order, leaving out name (the object's key).
func jsonFieldChanges(from, to any) ([]planChange, error) {
	fb, err := json.Marshal(from)
	if err != nil {
		return nil, err
	}
	tb, err := json.Marshal(to)
	if err != nil {
		return nil, err
	}
	var fm, tm map[string]json.RawMessage
	if err := json.Unmarshal(fb, &fm); err != nil {
		return nil, err
	}
	if err := json.Unmarshal(tb, &tm); err != nil {
		return nil, err
	}
	var changes []planChange
	for _, field := range jsonFieldNames(reflect.TypeOf(to)) {
		if field == "name" {
			continue
		}
		f, t := rawOrNull(fm[field]), rawOrNull(tm[field])
		if !bytes.Equal(f, t) {
			changes = append(changes, planChange{Field: field, From: f, To: t})
		}
	}
	return changes, nil
}

func rawOrNull(r json.RawMessage) json.RawMessage {
	if r == nil {
		return json.RawMessage("null")
	}
	return r
}

// jsonFieldNames lists the JSON names of a struct's fields in order.
func jsonFieldNames(t reflect.Type) []string {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	var names []string
	for i := range t.NumField() {
		f := t.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if name == "-" || !f.IsExported() {
			continue
		}
		if name == "" {
			name = f.Name
		}
		names = append(names, name)
	}
	return names
}

// printPlan writes the plan as + (create), ~ (update, one line per
// field) and = (unchanged) lines, then a count of each.
func printPlan(w io.Writer, steps []planStep) {
	counts := map[string]int{}
	for _, s := range steps {
		counts[s.Action]++
		switch s.Action {
		case planCreate:
			fmt.Fprintf(w, "+ %s %s\n", s.Kind, s.Name)
		case planUpdate:
			fmt.Fprintf(w, "~ %s %s\n", s.Kind, s.Name)
			for _, ch := range s.Changes {
				fmt.Fprintf(w, "    %s: %s -> %s\n", ch.Field, ch.From, ch.To)
			}
		default:
			fmt.Fprintf(w, "= %s %s (unchanged)\n", s.Kind, s.Name)
		}
	}
	fmt.Fprintf(w, "\nPlan: %d to create, %d to change, %d unchanged.\n", counts[planCreate], counts[planUpdate], counts[planUnchanged])
}

const featuresListHelp = `Usage: kiln features list [flags]

  Lists entities, feature views and feature services, in three sections.

  -kind KIND   only one kind: entities, views or services` + featuresConnUsage

// featureKind is one of list's sections: -kind's value, the heading, the
// collection and its key in the JSON answer, and its table.
type featureKind struct {
	flag, heading, path, key string
	headers                  []string
	row                      func(map[string]any) []string
}

var featureKinds = []featureKind{
	{"entities", "Entities", "/v1/entities", "entities", []string{"NAME", "JOIN_KEYS", "DESCRIPTION"}, func(e map[string]any) []string {
		return []string{str(e["name"]), strings.Join(stringsOf(e["join_keys"]), ","), dash(tableCell(str(e["description"])))}
	}},
	{"views", "Feature views", "/v1/feature-views", "feature_views", []string{"NAME", "ENTITY", "SOURCE", "TIMESTAMP", "TTL", "RETAIN", "FEATURES"}, func(v map[string]any) []string {
		var names []string
		for _, f := range asMaps(v["features"]) {
			names = append(names, str(f["name"]))
		}
		return []string{str(v["name"]), str(v["entity"]), str(v["source"]), str(v["timestamp_column"]),
			dash(str(v["ttl"])), dash(str(v["retain"])), strings.Join(names, ",")}
	}},
	{"services", "Feature services", "/v1/feature-services", "feature_services", []string{"NAME", "FEATURES", "DESCRIPTION"}, func(s map[string]any) []string {
		return []string{str(s["name"]), strings.Join(stringsOf(s["features"]), ","), dash(tableCell(str(s["description"])))}
	}},
}

func featuresListCommand() *command {
	return &command{synopsis: "List entities, feature views and feature services", help: featuresListHelp, run: func(args []string) int {
		fs, cf := newClientFlags("features list")
		kind := fs.String("kind", "", "")
		c, err := connect(fs, cf, args, 0, featuresListHelp)
		if err != nil {
			return fail(err)
		}
		kinds := featureKinds
		if *kind != "" {
			i := slices.IndexFunc(featureKinds, func(k featureKind) bool { return k.flag == *kind })
			if i < 0 {
				return fail(fmt.Errorf("-kind %q: use entities, views or services", *kind))
			}
			kinds = featureKinds[i : i+1]
		}
		answer := map[string]any{}
		for i, k := range kinds {
			all, err := listAll(c, k.path)
			if err != nil {
				return fail(err)
			}
			if all == nil {
				all = []map[string]any{}
			}
			answer[k.key] = all
			if cf.format == "json" {
				continue
			}
			if len(kinds) > 1 {
				if i > 0 {
					fmt.Println()
				}
				fmt.Println(k.heading)
			}
			rows := make([][]string, len(all))
			for j, it := range all {
				rows[j] = k.row(it)
			}
			printTable(k.headers, rows)
		}
		if cf.format == "json" {
			if len(kinds) == 1 {
				printJSON(map[string]any{"items": answer[kinds[0].key]})
			} else {
				printJSON(answer)
			}
		}
		return 0
	}}
}

const featuresGetHelp = `Usage: kiln features get [flags] -service NAME -entity KEY=VALUE [-entity ...]
       kiln features get [flags] -features VIEW:FEATURE,... -entity KEY=VALUE [-entity ...]

  Reads the latest values of features for entities, as of now, and prints
  a table of the entities' keys and every feature's value ("-" for none),
  then how many entities have no value at all.

  -service NAME        the features of a feature service
  -features LIST       VIEW:FEATURE or VIEW:* names, comma-separated
  -entity K=V[,K2=V2]  one entity by its join keys; repeat it for more
                       entities. A value that reads as an integer is sent
                       as a number, any other as a string.` + featuresConnUsage

func featuresGetCommand() *command {
	return &command{synopsis: "Read the latest feature values of entities", help: featuresGetHelp, run: runFeaturesGet}
}

func runFeaturesGet(args []string) int {
	fs, cf := newClientFlags("features get")
	service := fs.String("service", "", "")
	features := fs.String("features", "", "")
	var entityFlags stringList
	fs.Var(&entityFlags, "entity", "")
	c, err := connect(fs, cf, args, 0, featuresGetHelp)
	if err != nil {
		return fail(err)
	}
	req, err := featureSelection(*service, *features)
	if err != nil {
		return fail(err)
	}
	keys, entities, err := parseEntityFlags(entityFlags)
	if err != nil {
		return fail(err)
	}
	req["entities"] = entities
	var ans struct {
		Features []string         `json:"features"`
		Rows     []map[string]any `json:"rows"`
		Missing  json.Number      `json:"missing"`
	}
	raw, err := postExact(c, "/v1/features/online", req, &ans)
	if err != nil {
		return fail(err)
	}
	if cf.format == "json" {
		printJSON(raw)
		return 0
	}
	rows := make([][]string, len(ans.Rows))
	for i, r := range ans.Rows {
		values, _ := r["values"].(map[string]any)
		for _, k := range keys {
			rows[i] = append(rows[i], featureCell(r[k], "-"))
		}
		for _, f := range ans.Features {
			rows[i] = append(rows[i], featureCell(values[f], "-"))
		}
	}
	printTable(append(slices.Clone(keys), ans.Features...), rows)
	fmt.Printf("Missing: %s of %d entities have no values\n", ans.Missing, len(ans.Rows))
	return 0
}

// featureSelection starts a read's request with -service or -features,
// exactly one of them.
func featureSelection(service, features string) (map[string]any, error) {
	switch {
	case service != "" && features != "":
		return nil, errors.New("give -service or -features, not both")
	case service != "":
		return map[string]any{"feature_service": service}, nil
	case features != "":
		var list []string
		for _, f := range strings.Split(features, ",") {
			if f = strings.TrimSpace(f); f != "" {
				list = append(list, f)
			}
		}
		return map[string]any{"features": list}, nil
	}
	return nil, errors.New("say which features to read: -service NAME or -features VIEW:FEATURE,...")
}

// parseEntityFlags reads -entity K=V[,K2=V2] flags, one entity each, into
// the online request's map of join key to values, and the keys in the
// order the first flag gives them. Every flag must give the same keys.
func parseEntityFlags(flags []string) (keys []string, entities map[string][]any, err error) {
	if len(flags) == 0 {
		return nil, nil, errors.New("give at least one -entity KEY=VALUE, such as -entity user_id=7")
	}
	entities = map[string][]any{}
	for i, fl := range flags {
		row := map[string]any{}
		var order []string
		for _, pair := range strings.Split(fl, ",") {
			k, v, ok := strings.Cut(pair, "=")
			k = strings.TrimSpace(k)
			if !ok || k == "" {
				return nil, nil, fmt.Errorf("-entity %q: want KEY=VALUE[,KEY=VALUE], such as user_id=7", fl)
			}
			if _, dup := row[k]; dup {
				return nil, nil, fmt.Errorf("-entity %q gives %s twice", fl, k)
			}
			row[k] = entityValue(v)
			order = append(order, k)
		}
		if i == 0 {
			keys = order
		} else if !sameKeys(keys, order) {
			return nil, nil, fmt.Errorf("-entity %q gives %s; the first -entity gave %s: every entity needs the same join keys", fl, strings.Join(order, ","), strings.Join(keys, ","))
		}
		for _, k := range keys {
			entities[k] = append(entities[k], row[k])
		}
	}
	return keys, entities, nil
}

func sameKeys(a, b []string) bool {
	return len(a) == len(b) && !slices.ContainsFunc(b, func(k string) bool { return !slices.Contains(a, k) })
}

// entityValue is a join key's value as the node takes it: a number when
// the text is an integer, else the text.
func entityValue(s string) any {
	if n, err := strconv.ParseInt(s, 10, 64); err == nil {
		return n
	}
	return s
}

// postExact posts in and decodes the answer into out with numbers kept as
// written (an int64 entity key or value stays exact), returning the answer
// as it came for -format json.
func postExact(c *client, path string, in, out any) (json.RawMessage, error) {
	var raw json.RawMessage
	if err := c.do("POST", path, in, &raw); err != nil {
		return nil, err
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	if err := dec.Decode(out); err != nil {
		return nil, fmt.Errorf("reading the answer: %w", err)
	}
	return raw, nil
}

// featureCell renders a feature value decoded with UseNumber: text as it
// is, numbers as written, none as null; lists and objects as JSON.
func featureCell(v any, null string) string {
	switch x := v.(type) {
	case nil:
		return null
	case string:
		return tableCell(x)
	case json.Number:
		return x.String()
	case bool:
		return strconv.FormatBool(x)
	}
	b, _ := json.Marshal(v)
	return tableCell(string(b))
}

const featuresHistoricalHelp = `Usage: kiln features historical [flags] -service NAME -entities ROWS.csv
       kiln features historical [flags] -features VIEW:FEATURE,... -entities ROWS.csv
       kiln features historical [flags] -service NAME -entity-dataset NAME[:V] -output NAME

  Reads features as of points in time, for training sets: for each row of
  ROWS.csv, every feature's latest value at or before the row's time,
  never one from after it. ROWS.csv has a header naming the join keys and
  the timestamp column (RFC 3339, or Unix seconds); other columns (a
  label) are carried along. Integers are sent as numbers. The answer is a
  CSV of the input columns then one column per feature (VIEW:FEATURE),
  empty where there is no value.

  -service NAME             the features of a feature service
  -features LIST            VIEW:FEATURE or VIEW:* names, comma-separated
  -entities FILE            the CSV of entity rows
  -timestamp-column NAME    the rows' time column (default ts)
  -out FILE                 write the CSV to FILE instead of stdout

  For a large frame, the entity rows are a dataset version and the frame
  is written by the node as the next version of a dataset, with its
  lineage (the views' states), for a training job to read:

  -entity-dataset NAME[:V]  the dataset version of entity rows
  -output NAME              the dataset that receives the frame` + featuresConnUsage

func featuresHistoricalCommand() *command {
	return &command{synopsis: "Read feature values as of points in time into a CSV", help: featuresHistoricalHelp, run: runFeaturesHistorical}
}

func runFeaturesHistorical(args []string) int {
	fs, cf := newClientFlags("features historical")
	service := fs.String("service", "", "")
	features := fs.String("features", "", "")
	entitiesFile := fs.String("entities", "", "")
	tsColumn := fs.String("timestamp-column", "ts", "")
	outFile := fs.String("out", "", "")
	entityDataset := fs.String("entity-dataset", "", "")
	output := fs.String("output", "", "")
	c, err := connect(fs, cf, args, 0, featuresHistoricalHelp)
	if err != nil {
		return fail(err)
	}
	req, err := featureSelection(*service, *features)
	if err != nil {
		return fail(err)
	}
	if *entityDataset != "" || *output != "" {
		if *entityDataset == "" || *output == "" || *entitiesFile != "" {
			return fail(errors.New("a frame into a dataset takes -entity-dataset NAME[:V] and -output NAME, and no -entities"))
		}
		req["entity_dataset"], req["output"], req["timestamp_column"] = *entityDataset, *output, *tsColumn
		var v struct {
			Dataset  string `json:"dataset"`
			Version  uint64 `json:"version"`
			Rows     int64  `json:"rows"`
			Features struct {
				Features []string `json:"features"`
				Index    uint64   `json:"index"`
			} `json:"features"`
		}
		raw, err := postExact(c, "/v1/features/historical", req, &v)
		if err != nil {
			return fail(err)
		}
		if cf.format == "json" {
			fmt.Println(string(raw))
			return 0
		}
		fmt.Printf("Wrote %s:%d: %d rows, features %s (as of registry index %d)\n", v.Dataset, v.Version, v.Rows, strings.Join(v.Features.Features, ", "), v.Features.Index)
		return 0
	}
	if *entitiesFile == "" {
		return fail(errors.New("give the entity rows with -entities ROWS.csv: a header naming the join keys and " + *tsColumn))
	}
	header, records, err := readEntityRows(*entitiesFile, *tsColumn)
	if err != nil {
		return fail(err)
	}
	req["timestamp_column"] = *tsColumn

	var names []string
	answered := make([]map[string]any, 0, len(records))
	values := make([][]string, 0, len(records))
	for start := 0; start < len(records); start += historicalBatchRows {
		batch := records[start:min(start+historicalBatchRows, len(records))]
		rows := make([]map[string]any, len(batch))
		for i, rec := range batch {
			rows[i] = make(map[string]any, len(header))
			for j, col := range header {
				rows[i][col] = csvValue(rec[j])
			}
		}
		req["entity_rows"] = rows
		var ans struct {
			Features []string         `json:"features"`
			Rows     []map[string]any `json:"rows"`
		}
		_, err := postExact(c, "/v1/features/historical", req, &ans)
		if err != nil {
			if start > 0 {
				err = fmt.Errorf("rows %d-%d of %s: %w", start+1, start+len(batch), *entitiesFile, err)
			}
			return fail(err)
		}
		if len(ans.Rows) != len(batch) {
			return fail(fmt.Errorf("the node answered %d rows for %d", len(ans.Rows), len(batch)))
		}
		names = ans.Features
		answered = append(answered, ans.Rows...)
		for _, r := range ans.Rows {
			vals, _ := r["values"].(map[string]any)
			row := make([]string, len(names))
			for j, f := range names {
				row[j] = csvCell(vals[f])
			}
			values = append(values, row)
		}
	}

	out := io.Writer(os.Stdout)
	if *outFile != "" {
		f, err := os.Create(*outFile)
		if err != nil {
			return fail(err)
		}
		defer f.Close()
		out = f
	}
	if cf.format == "json" {
		// The batches' answers as one; numbers stay as the node wrote them.
		enc := json.NewEncoder(out)
		enc.SetIndent("", "  ")
		if err := enc.Encode(map[string]any{"features": names, "rows": answered}); err != nil {
			return fail(err)
		}
		return 0
	}
	w := csv.NewWriter(out)
	_ = w.Write(append(slices.Clone(header), names...))
	for i, rec := range records {
		_ = w.Write(append(slices.Clone(rec), values[i]...))
	}
	w.Flush()
	if err := w.Error(); err != nil {
		return fail(err)
	}
	if *outFile != "" {
		fmt.Printf("Wrote %d rows with %d features to %s\n", len(records), len(names), *outFile)
	}
	return 0
}

// readEntityRows reads the entity rows' CSV: a header that names the
// timestamp column, and at least one row.
func readEntityRows(path, tsColumn string) (header []string, records [][]string, err error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, nil, err
	}
	defer f.Close()
	r := csv.NewReader(f)
	all, err := r.ReadAll()
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", path, err)
	}
	if len(all) < 2 {
		return nil, nil, fmt.Errorf("%s: want a header naming the join keys and %s, then one row per entity and time", path, tsColumn)
	}
	header = all[0]
	if !slices.Contains(header, tsColumn) {
		return nil, nil, fmt.Errorf("%s: the header %s has no %s column: give the rows' time column with -timestamp-column", path, strings.Join(header, ","), tsColumn)
	}
	return header, all[1:], nil
}

// csvValue is a CSV cell as an entity row's value: an integer as a number,
// an empty cell as null, any other as text.
func csvValue(s string) any {
	if s == "" {
		return nil
	}
	return entityValue(s)
}

// csvCell renders a feature value decoded with UseNumber for the output
// CSV: empty for none, lists and objects as JSON.
func csvCell(v any) string {
	switch x := v.(type) {
	case nil:
		return ""
	case string:
		return x
	case json.Number:
		return x.String()
	case bool:
		return strconv.FormatBool(x)
	}
	b, _ := json.Marshal(v)
	return string(b)
}
