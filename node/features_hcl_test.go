package node

import (
	"reflect"
	"strings"
	"testing"

	"github.com/kilnml/kiln/raftfsm/structs"
)

// exampleFeaturesHCL declares one of each kind of object, with every
// source kind block and expectation form the CLI's help shows.
const exampleFeaturesHCL = `source "txns" {
  kind        = "postgres"
  schedule    = "5m"
  dataset     = "txns_raw"
  description = "card transactions"
  schema      = { user_id = "int", ts = "timestamp", amount = "float", country = "string" }
  postgres {
    conn = "postgres://kiln@db/shop"
    password {
      env = "PGPASSWORD"
    }
    query              = "SELECT user_id, ts, amount, country FROM txns"
    incremental_column = "ts"
  }
  expect "not_null" {
    column = "user_id"
  }
  expect "range" {
    column = "amount"
    min    = 0
    max    = 10000
  }
  expect "allowed" {
    column = "country"
    values = ["fr", "de"]
  }
  expect "row_count_between" {
    min = 1
  }
}

source "api" {
  kind     = "http"
  schedule = "0 3 * * *"
  http {
    url           = "https://api.example.com/items"
    format        = "json"
    records_field = "items"
    token {
      file = "/etc/kiln/tok"
    }
    pagination {
      type         = "cursor"
      param        = "cursor"
      cursor_field = "next"
    }
  }
}

source "logs" {
  kind = "file"
  file {
    path   = "/data/*.csv"
    format = "csv"
    node   = "node-1"
  }
}

source "clicks" {
  kind   = "kafka"
  schema = { user_id = "int", ts = "timestamp" }
  kafka {
    brokers      = ["k:9092"]
    topics       = ["t"]
    group        = "g"
    start_offset = "earliest"
  }
}

source "events" {
  kind   = "nats"
  schema = { user_id = "int" }
  nats {
    url      = "nats://n:4222"
    stream   = "S"
    subjects = ["a.>"]
    durable  = "d"
    token {
      env = "NATS_TOKEN"
    }
  }
  expect "max_null_fraction" {
    column   = "user_id"
    fraction = 0.1
  }
}

source "pushed" {
  kind   = "push"
  schema = { user_id = "int", ts = "timestamp", amount = "float" }
  expect "regex" {
    column  = "user_id"
    pattern = "^[0-9]+$"
  }
}

entity "user" {
  join_keys   = ["user_id"]
  description = "a card holder"
}

feature_view "txn_stats" {
  entity           = "user"
  source           = "txns"
  timestamp_column = "ts"
  ttl              = "24h"
  retain           = "90d"
  feature "amount" {}
  feature "amount_cents" {
    type = "int"
    expr = "int(amount * 100)"
  }
  feature "amount_sum_1h" {
    expr   = "sum(amount)"
    window = "1h"
  }
}

feature_service "fraud" {
  features    = ["txn_stats:amount", "txn_stats:*"]
  description = "what the fraud model reads"
}
`

func f64(v float64) *float64 { return &v }

func TestParseFeaturesHCL_ConvertsToStructs(t *testing.T) {
	cases := []struct {
		name string
		hcl  string
		want FeaturesFile
	}{
		{"every kind", exampleFeaturesHCL, FeaturesFile{
			Sources: []structs.SourceSpec{
				{
					Name: "txns", Kind: "postgres", Schedule: "5m", Dataset: "txns_raw", Description: "card transactions",
					Schema: map[string]string{"user_id": "int", "ts": "timestamp", "amount": "float", "country": "string"},
					Postgres: &structs.PostgresSource{
						Conn: "postgres://kiln@db/shop", Password: structs.Secret{Env: "PGPASSWORD"},
						Query: "SELECT user_id, ts, amount, country FROM txns", IncrementalColumn: "ts",
					},
					Expectations: []structs.Expectation{
						{Rule: "not_null", Column: "user_id"},
						{Rule: "range", Column: "amount", Min: f64(0), Max: f64(10000)},
						{Rule: "allowed", Column: "country", Values: []string{"fr", "de"}},
						{Rule: "row_count_between", Min: f64(1)},
					},
				},
				{
					Name: "api", Kind: "http", Schedule: "0 3 * * *",
					HTTP: &structs.HTTPSource{
						URL: "https://api.example.com/items", Format: "json", RecordsField: "items",
						Token:      structs.Secret{File: "/etc/kiln/tok"},
						Pagination: &structs.HTTPPagination{Type: "cursor", Param: "cursor", CursorField: "next"},
					},
				},
				{Name: "logs", Kind: "file", File: &structs.FileSource{Path: "/data/*.csv", Format: "csv", Node: "node-1"}},
				{
					Name: "clicks", Kind: "kafka", Schema: map[string]string{"user_id": "int", "ts": "timestamp"},
					Kafka: &structs.KafkaSource{Brokers: []string{"k:9092"}, Topics: []string{"t"}, Group: "g", StartOffset: "earliest"},
				},
				{
					Name: "events", Kind: "nats", Schema: map[string]string{"user_id": "int"},
					NATS:         &structs.NATSSource{URL: "nats://n:4222", Stream: "S", Subjects: []string{"a.>"}, Durable: "d", Token: structs.Secret{Env: "NATS_TOKEN"}},
					Expectations: []structs.Expectation{{Rule: "max_null_fraction", Column: "user_id", Fraction: f64(0.1)}},
				},
				{
					Name: "pushed", Kind: "push", Schema: map[string]string{"user_id": "int", "ts": "timestamp", "amount": "float"},
					Expectations: []structs.Expectation{{Rule: "regex", Column: "user_id", Pattern: "^[0-9]+$"}},
				},
			},
			Entities: []structs.Entity{{Name: "user", JoinKeys: []string{"user_id"}, Description: "a card holder"}},
			Views: []structs.FeatureView{{
				Name: "txn_stats", Entity: "user", Source: "txns", TimestampColumn: "ts", TTL: "24h", Retain: "90d",
				Features: []structs.Feature{
					{Name: "amount"},
					{Name: "amount_cents", Type: "int", Expr: "int(amount * 100)"},
					{Name: "amount_sum_1h", Expr: "sum(amount)", Window: "1h"},
				},
			}},
			Services: []structs.FeatureService{{Name: "fraud", Features: []string{"txn_stats:amount", "txn_stats:*"}, Description: "what the fraud model reads"}},
		}},
		{"http without token or pagination", `
source "h" {
  kind = "http"
  http {
    url = "http://127.0.0.1:9/x"
  }
}`, FeaturesFile{Sources: []structs.SourceSpec{{Name: "h", Kind: "http", HTTP: &structs.HTTPSource{URL: "http://127.0.0.1:9/x"}}}}},
		{"postgres without password", `
source "p" {
  kind = "postgres"
  postgres {
    conn               = "host=db user=kiln"
    query              = "SELECT 1 AS id"
    incremental_column = "id"
  }
}`, FeaturesFile{Sources: []structs.SourceSpec{{Name: "p", Kind: "postgres",
			Postgres: &structs.PostgresSource{Conn: "host=db user=kiln", Query: "SELECT 1 AS id", IncrementalColumn: "id"}}}}},
		{"only features, blocks interleaved, in file order", `
feature_service "s2" {
  features = ["v:*"]
}
entity "b" {
  join_keys = ["k1", "k2"]
}
feature_service "s1" {
  features = ["v:x"]
}
entity "a" {
  join_keys = ["k"]
}`, FeaturesFile{
			Entities: []structs.Entity{{Name: "b", JoinKeys: []string{"k1", "k2"}}, {Name: "a", JoinKeys: []string{"k"}}},
			Services: []structs.FeatureService{{Name: "s2", Features: []string{"v:*"}}, {Name: "s1", Features: []string{"v:x"}}},
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseFeaturesHCL([]byte(tc.hcl), "features.hcl")
			if err != nil {
				t.Fatalf("ParseFeaturesHCL: %v", err)
			}
			if !reflect.DeepEqual(*got, tc.want) {
				t.Errorf("got\n%#v\nwant\n%#v", *got, tc.want)
			}
		})
	}
}

// The example's objects are ones the node takes, as far as each can be
// checked alone.
func TestParseFeaturesHCL_ExampleValidates(t *testing.T) {
	f, err := ParseFeaturesHCL([]byte(exampleFeaturesHCL), "features.hcl")
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range f.Sources {
		s.Normalize()
		if err := s.Validate(); err != nil {
			t.Errorf("source %s: %v", s.Name, err)
		}
	}
	for _, e := range f.Entities {
		if err := e.Validate(); err != nil {
			t.Errorf("entity %s: %v", e.Name, err)
		}
	}
	for _, v := range f.Views {
		if err := v.Validate(); err != nil {
			t.Errorf("view %s: %v", v.Name, err)
		}
	}
	for _, s := range f.Services {
		if err := s.Validate(); err != nil {
			t.Errorf("service %s: %v", s.Name, err)
		}
	}
}

func TestParseFeaturesHCL_ErrorsNameFileLineAndKey(t *testing.T) {
	const entity = "entity \"user\" {\n  join_keys = [\"user_id\"]\n}\n" // lines 1-3
	cases := []struct {
		name, hcl string
		msgs      []string // parts the error must hold
	}{
		{"unknown attribute", "source \"s\" {\n  kind = \"push\"\n  colour = \"red\"\n}\n",
			[]string{"features.hcl:3,", "Unsupported argument", `"colour"`}},
		{"unknown attribute in a kind block", "source \"s\" {\n  kind = \"http\"\n  http {\n    url = \"http://x\"\n    verb = \"GET\"\n  }\n}\n",
			[]string{"features.hcl:5,", "Unsupported argument", `"verb"`}},
		{"unknown attribute in a feature", entity + "feature_view \"v\" {\n  entity = \"user\"\n  source = \"s\"\n  timestamp_column = \"ts\"\n  feature \"a\" {\n    agg = \"sum\"\n  }\n}\n",
			[]string{"features.hcl:9,", "Unsupported argument", `"agg"`}},
		{"unknown attribute in an entity", "entity \"user\" {\n  join_keys = [\"id\"]\n  keys = [\"id\"]\n}\n",
			[]string{"features.hcl:3,", `"keys"`}},
		{"unknown block", "pipeline \"p\" {\n}\n",
			[]string{"features.hcl:1,", "Unsupported block type", `"pipeline"`}},
		{"unknown block in a source", "source \"s\" {\n  kind = \"s3\"\n  s3 {\n  }\n}\n",
			[]string{"features.hcl:3,", "Unsupported block type", `"s3"`}},
		{"wrong type", "source \"s\" {\n  kind = \"push\"\n  schema = [\"a\"]\n}\n",
			[]string{"features.hcl:3,", "schema"}},
		{"wrong type in an expectation", "source \"s\" {\n  kind = \"push\"\n  expect \"range\" {\n    min = \"low\"\n  }\n}\n",
			[]string{"features.hcl:4,", "min", "a number is required"}},
		{"missing kind", "source \"s\" {\n  schedule = \"5m\"\n}\n",
			[]string{"features.hcl:1,", "Missing required argument", `"kind"`}},
		{"missing join keys", "entity \"e\" {\n}\n",
			[]string{"features.hcl:1,", `"join_keys"`}},
		{"missing label", "entity {\n  join_keys = [\"id\"]\n}\n",
			[]string{"features.hcl:1,", "name"}},
		{"two kind blocks", "source \"s\" {\n  kind = \"file\"\n  file {\n    path = \"/a\"\n  }\n  file {\n    path = \"/b\"\n  }\n}\n",
			[]string{"features.hcl:6,", "Duplicate file block"}},
		{"source twice", "source \"s\" {\n  kind = \"push\"\n}\nsource \"s\" {\n  kind = \"push\"\n}\n",
			[]string{`features.hcl:4: source "s" is declared twice (first at line 1)`}},
		{"entity twice", entity + entity,
			[]string{`features.hcl:4: entity "user" is declared twice (first at line 1)`}},
		{"view twice", "feature_view \"v\" {\n  entity = \"e\"\n  source = \"s\"\n  timestamp_column = \"ts\"\n}\n" +
			"feature_view \"v\" {\n  entity = \"e\"\n  source = \"s\"\n  timestamp_column = \"ts\"\n}\n",
			[]string{`features.hcl:6: feature_view "v" is declared twice (first at line 1)`}},
		{"service twice", "feature_service \"f\" {\n  features = [\"v:*\"]\n}\nfeature_service \"f\" {\n  features = [\"v:*\"]\n}\n",
			[]string{`features.hcl:4: feature_service "f" is declared twice (first at line 1)`}},
		{"feature twice", "feature_view \"v\" {\n  entity = \"e\"\n  source = \"s\"\n  timestamp_column = \"ts\"\n  feature \"a\" {}\n  feature \"a\" {\n    type = \"int\"\n  }\n}\n",
			[]string{`features.hcl:6: feature_view "v": feature "a" is declared twice (first at line 5)`}},
		{"syntax error", "source \"s\" {\n  kind = \n}\n",
			[]string{"features.hcl:2,"}},
		{"empty file", "# nothing\n",
			[]string{"features.hcl: no block"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseFeaturesHCL([]byte(tc.hcl), "features.hcl")
			if err == nil {
				t.Fatalf("no error; want one holding %q", tc.msgs)
			}
			for _, m := range tc.msgs {
				if !strings.Contains(err.Error(), m) {
					t.Errorf("error %q lacks %q", err, m)
				}
			}
		})
	}
}

// A source's name may also name an entity or a view: each kind has its own
// names.
func TestParseFeaturesHCL_KindsHaveTheirOwnNames(t *testing.T) {
	f, err := ParseFeaturesHCL([]byte("source \"user\" {\n  kind = \"push\"\n}\nentity \"user\" {\n  join_keys = [\"id\"]\n}\n"), "f.hcl")
	if err != nil || len(f.Sources) != 1 || len(f.Entities) != 1 {
		t.Fatalf("ParseFeaturesHCL = %+v, %v", f, err)
	}
}
