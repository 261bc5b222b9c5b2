package node

import (
	"fmt"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/gohcl"
	"github.com/hashicorp/hcl/v2/hclparse"

	"github.com/kilnml/kiln/raftfsm/structs"
)

// The HCL form of sources, entities, feature views and feature services,
// which `kiln sources apply` and `kiln features apply` send as JSON. HCL is
// read in node only (STYLE.md): the CLI calls ParseFeaturesHCL.

// FeaturesFile is what a features file declares, each kind in file order.
// Only the fields a user declares are set; what they mean and allow is the
// node's to check when they are sent.
type FeaturesFile struct {
	Sources  []structs.SourceSpec
	Entities []structs.Entity
	Views    []structs.FeatureView
	Services []structs.FeatureService
}

// featuresFile is the HCL form of a FeaturesFile: blocks labelled with
// their names.
type featuresFile struct {
	Sources  []sourceBlock         `hcl:"source,block"`
	Entities []entityBlock         `hcl:"entity,block"`
	Views    []featureViewBlock    `hcl:"feature_view,block"`
	Services []featureServiceBlock `hcl:"feature_service,block"`
}

type sourceBlock struct {
	Name        string               `hcl:"name,label"`
	Kind        string               `hcl:"kind"`
	Schedule    string               `hcl:"schedule,optional"`
	Dataset     string               `hcl:"dataset,optional"`
	Description string               `hcl:"description,optional"`
	Schema      map[string]string    `hcl:"schema,optional"`
	Postgres    *postgresBlock       `hcl:"postgres,block"`
	HTTP        *httpSourceBlock     `hcl:"http,block"`
	File        *structs.FileSource  `hcl:"file,block"`
	Kafka       *structs.KafkaSource `hcl:"kafka,block"`
	NATS        *natsBlock           `hcl:"nats,block"`
	Expect      []expectBlock        `hcl:"expect,block"`
	DefRange    hcl.Range            `hcl:",def_range"`
}

// postgresBlock, httpSourceBlock and natsBlock are the structs' kinds with
// their secret blocks optional: a source may need no credential.
type postgresBlock struct {
	Conn              string          `hcl:"conn"`
	Password          *structs.Secret `hcl:"password,block"`
	Query             string          `hcl:"query"`
	IncrementalColumn string          `hcl:"incremental_column"`
}

type httpSourceBlock struct {
	URL          string                  `hcl:"url"`
	Format       string                  `hcl:"format,optional"`
	RecordsField string                  `hcl:"records_field,optional"`
	Token        *structs.Secret         `hcl:"token,block"`
	Pagination   *structs.HTTPPagination `hcl:"pagination,block"`
}

type natsBlock struct {
	URL      string          `hcl:"url"`
	Stream   string          `hcl:"stream"`
	Subjects []string        `hcl:"subjects,optional"`
	Durable  string          `hcl:"durable,optional"`
	Token    *structs.Secret `hcl:"token,block"`
}

// expectBlock is one expectation, its label the rule.
type expectBlock struct {
	Rule     string   `hcl:"rule,label"`
	Column   string   `hcl:"column,optional"`
	Min      *float64 `hcl:"min,optional"`
	Max      *float64 `hcl:"max,optional"`
	Values   []string `hcl:"values,optional"`
	Pattern  string   `hcl:"pattern,optional"`
	Type     string   `hcl:"type,optional"`
	Fraction *float64 `hcl:"fraction,optional"`
}

type entityBlock struct {
	Name        string    `hcl:"name,label"`
	JoinKeys    []string  `hcl:"join_keys"`
	Description string    `hcl:"description,optional"`
	DefRange    hcl.Range `hcl:",def_range"`
}

type featureViewBlock struct {
	Name            string         `hcl:"name,label"`
	Entity          string         `hcl:"entity"`
	Source          string         `hcl:"source"`
	TimestampColumn string         `hcl:"timestamp_column"`
	TTL             string         `hcl:"ttl,optional"`
	Retain          string         `hcl:"retain,optional"`
	Description     string         `hcl:"description,optional"`
	Features        []featureBlock `hcl:"feature,block"`
	DefRange        hcl.Range      `hcl:",def_range"`
}

type featureBlock struct {
	Name     string    `hcl:"name,label"`
	Type     string    `hcl:"type,optional"`
	Expr     string    `hcl:"expr,optional"`
	Window   string    `hcl:"window,optional"`
	DefRange hcl.Range `hcl:",def_range"`
}

type featureServiceBlock struct {
	Name        string    `hcl:"name,label"`
	Features    []string  `hcl:"features"`
	Description string    `hcl:"description,optional"`
	DefRange    hcl.Range `hcl:",def_range"`
}

// ParseFeaturesHCL decodes an HCL features file: source, entity,
// feature_view and feature_service blocks, each labelled with its name. An
// unknown argument or block, a value of the wrong type, a file with no
// block, or a name given twice (two sources, two features of a view) is an
// error naming filename and the line.
func ParseFeaturesHCL(src []byte, filename string) (*FeaturesFile, error) {
	f, diags := hclparse.NewParser().ParseHCL(src, filename)
	if diags.HasErrors() {
		return nil, hclDiagError(diags, nil)
	}
	var file featuresFile
	if diags := gohcl.DecodeBody(f.Body, nil, &file); diags.HasErrors() {
		return nil, hclDiagError(diags, f.Body)
	}
	if len(file.Sources)+len(file.Entities)+len(file.Views)+len(file.Services) == 0 {
		return nil, fmt.Errorf("%s: no block: a features file holds source, entity, feature_view and feature_service blocks", filename)
	}
	out := &FeaturesFile{}
	sources := declaredNames{}
	for _, b := range file.Sources {
		if err := sources.add("source", b.Name, b.DefRange); err != nil {
			return nil, err
		}
		out.Sources = append(out.Sources, b.spec())
	}
	entities := declaredNames{}
	for _, b := range file.Entities {
		if err := entities.add("entity", b.Name, b.DefRange); err != nil {
			return nil, err
		}
		out.Entities = append(out.Entities, structs.Entity{Name: b.Name, JoinKeys: b.JoinKeys, Description: b.Description})
	}
	views := declaredNames{}
	for _, b := range file.Views {
		if err := views.add("feature_view", b.Name, b.DefRange); err != nil {
			return nil, err
		}
		v, err := b.view()
		if err != nil {
			return nil, err
		}
		out.Views = append(out.Views, v)
	}
	services := declaredNames{}
	for _, b := range file.Services {
		if err := services.add("feature_service", b.Name, b.DefRange); err != nil {
			return nil, err
		}
		out.Services = append(out.Services, structs.FeatureService{Name: b.Name, Features: b.Features, Description: b.Description})
	}
	return out, nil
}

// declaredNames finds a name declared twice among the blocks of one kind,
// saying where it was first declared.
type declaredNames map[string]hcl.Range

// add records the name of a block at at; what says what it names.
func (n declaredNames) add(what, name string, at hcl.Range) error {
	if first, dup := n[name]; dup {
		return fmt.Errorf("%s: %s %q is declared twice (first at line %d)", rangeLine(at), what, name, first.Start.Line)
	}
	n[name] = at
	return nil
}

// spec converts a source block into the spec the node takes.
func (b *sourceBlock) spec() structs.SourceSpec {
	s := structs.SourceSpec{
		Name: b.Name, Kind: b.Kind, Schema: b.Schema, Schedule: b.Schedule,
		Dataset: b.Dataset, Description: b.Description,
		File: b.File, Kafka: b.Kafka,
	}
	if p := b.Postgres; p != nil {
		s.Postgres = &structs.PostgresSource{Conn: p.Conn, Password: secretOf(p.Password), Query: p.Query, IncrementalColumn: p.IncrementalColumn}
	}
	if h := b.HTTP; h != nil {
		s.HTTP = &structs.HTTPSource{URL: h.URL, Format: h.Format, RecordsField: h.RecordsField, Token: secretOf(h.Token), Pagination: h.Pagination}
	}
	if n := b.NATS; n != nil {
		s.NATS = &structs.NATSSource{URL: n.URL, Stream: n.Stream, Subjects: n.Subjects, Durable: n.Durable, Token: secretOf(n.Token)}
	}
	for _, e := range b.Expect {
		s.Expectations = append(s.Expectations, structs.Expectation{
			Rule: e.Rule, Column: e.Column, Min: e.Min, Max: e.Max, Values: e.Values,
			Pattern: e.Pattern, Type: e.Type, Fraction: e.Fraction,
		})
	}
	return s
}

// secretOf is a secret block's value; no block names no secret.
func secretOf(s *structs.Secret) structs.Secret {
	if s == nil {
		return structs.Secret{}
	}
	return *s
}

// view converts a feature_view block into the view the node takes.
func (b *featureViewBlock) view() (structs.FeatureView, error) {
	v := structs.FeatureView{
		Name: b.Name, Entity: b.Entity, Source: b.Source, TimestampColumn: b.TimestampColumn,
		TTL: b.TTL, Retain: b.Retain, Description: b.Description,
	}
	seen := declaredNames{}
	for _, f := range b.Features {
		if err := seen.add(fmt.Sprintf("feature_view %q: feature", b.Name), f.Name, f.DefRange); err != nil {
			return v, err
		}
		v.Features = append(v.Features, structs.Feature{Name: f.Name, Type: f.Type, Expr: f.Expr, Window: f.Window})
	}
	return v, nil
}
