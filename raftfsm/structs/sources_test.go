package structs

import (
	"strings"
	"testing"
)

// validSource is a spec of kind that Validate accepts, before Normalize.
func validSource(kind string) SourceSpec {
	s := SourceSpec{Name: "orders", Kind: kind}
	switch kind {
	case SourcePostgres:
		s.Postgres = &PostgresSource{Conn: "postgres://kiln@db:5432/shop", Password: Secret{Env: "PGPASSWORD"},
			Query: "SELECT * FROM orders", IncrementalColumn: "updated_at"}
	case SourceHTTP:
		s.HTTP = &HTTPSource{URL: "https://api.example.com/orders", RecordsField: "items",
			Pagination: &HTTPPagination{Type: PaginationCursor, Param: "cursor", CursorField: "next"}}
	case SourceFile:
		s.File = &FileSource{Path: "/data/orders/*.csv"}
	case SourceKafka:
		s.Schema = map[string]string{"id": "int"}
		s.Kafka = &KafkaSource{Brokers: []string{"kafka:9092"}, Topics: []string{"orders"}}
	case SourceNATS:
		s.Schema = map[string]string{"id": "int"}
		s.NATS = &NATSSource{URL: "nats://nats:4222", Stream: "ORDERS"}
	case SourcePush:
		s.Schema = map[string]string{"id": "int"}
	}
	return s
}

// Validate accepts a normalized spec of each kind, and refuses a bad one
// with CodeInvalid and an error naming the field at fault.
func TestSourceSpec_Validate(t *testing.T) {
	cases := []struct {
		name   string
		kind   string
		change func(s *SourceSpec)
		want   string // a part of the error; "" for none
	}{
		{"postgres", SourcePostgres, nil, ""},
		{"http", SourceHTTP, nil, ""},
		{"file", SourceFile, nil, ""},
		{"kafka", SourceKafka, nil, ""},
		{"nats with the default durable", SourceNATS, nil, ""},
		{"push", SourcePush, nil, ""},

		{"unknown kind", SourcePush, func(s *SourceSpec) { s.Kind = "ftp" }, `kind "ftp" is not a source kind`},
		{"password in a postgres URL", SourcePostgres, func(s *SourceSpec) { s.Postgres.Conn = "postgres://kiln:hunter2@db/shop" }, "postgres.conn holds a password"},
		{"password in postgres key=value", SourcePostgres, func(s *SourceSpec) { s.Postgres.Conn = "host=db password=hunter2" }, "postgres.conn holds a password"},
		{"push without a schema", SourcePush, func(s *SourceSpec) { s.Schema = nil }, "schema is required for a push source"},
		{"bad schedule", SourceFile, func(s *SourceSpec) { s.Schedule = "every day" }, `schedule "every day"`},
		{"schedule too short", SourceFile, func(s *SourceSpec) { s.Schedule = "10ms" }, "at least"},
		{"schedule on a stream", SourceKafka, func(s *SourceSpec) { s.Schedule = "1h" }, "reads continuously"},
		{"cron schedule", SourceFile, func(s *SourceSpec) { s.Schedule = "0 3 * * *" }, ""},
		{"cursor pagination without cursor_field", SourceHTTP, func(s *SourceSpec) { s.HTTP.Pagination.CursorField = "" }, "http.pagination.cursor_field is required"},

		{"nats durable empty", SourceNATS, func(s *SourceSpec) { s.NATS.Durable = "" }, "nats.durable"},
		{"nats durable set", SourceNATS, func(s *SourceSpec) { s.NATS.Durable = "kiln-orders_v2" }, ""},
		{"nats durable of 255 bytes", SourceNATS, func(s *SourceSpec) { s.NATS.Durable = strings.Repeat("d", 255) }, ""},
		{"nats durable of 256 bytes", SourceNATS, func(s *SourceSpec) { s.NATS.Durable = strings.Repeat("d", 256) }, "nats.durable"},
		{"nats durable with a dot", SourceNATS, func(s *SourceSpec) { s.NATS.Durable = "kiln.orders" }, "nats.durable"},
		{"nats durable with a star", SourceNATS, func(s *SourceSpec) { s.NATS.Durable = "kiln*" }, "nats.durable"},
		{"nats durable with a gt", SourceNATS, func(s *SourceSpec) { s.NATS.Durable = "kiln>" }, "nats.durable"},
		{"nats durable with a space", SourceNATS, func(s *SourceSpec) { s.NATS.Durable = "kiln orders" }, "nats.durable"},
		{"nats durable with a tab", SourceNATS, func(s *SourceSpec) { s.NATS.Durable = "kiln\torders" }, "nats.durable"},
		{"nats durable with a slash", SourceNATS, func(s *SourceSpec) { s.NATS.Durable = "../orders" }, "nats.durable"},
		{"nats durable with a backslash", SourceNATS, func(s *SourceSpec) { s.NATS.Durable = `kiln\orders` }, "nats.durable"},
		{"nats durable with a control character", SourceNATS, func(s *SourceSpec) { s.NATS.Durable = "kiln\x00" }, "nats.durable"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := validSource(tc.kind)
			s.Normalize()
			if tc.change != nil {
				tc.change(&s)
			}
			err := s.Validate()
			if tc.want == "" {
				if err != nil {
					t.Fatalf("Validate() = %v, want nil", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Validate() = %v, want an error saying %q", err, tc.want)
			}
			if code := ErrorCode(err); code != CodeInvalid {
				t.Fatalf("Validate() code %q, want %q", code, CodeInvalid)
			}
		})
	}
}
