package data

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/kilnml/kiln/cluster-tests/testutil"
	"github.com/kilnml/kiln/raftfsm/structs"
)

// collector is an Emit that keeps what it is handed, as the registry would:
// the records of every committed batch and the position they move to.
type collector struct {
	batches []Batch
	pos     Position
	// failAt, when > 0, makes the failAt-th call fail without committing,
	// as a lost leader would.
	failAt int
	calls  int
}

var errNotCommitted = errors.New("test: batch not committed")

func newCollector(from Position) *collector {
	c := &collector{pos: Position{}}
	for k, v := range from {
		c.pos[k] = v
	}
	return c
}

func (c *collector) emit(ctx context.Context, b Batch) error {
	c.calls++
	if c.calls == c.failAt {
		return errNotCommitted
	}
	c.batches = append(c.batches, b)
	for k, v := range b.Advance {
		c.pos[k] = v
	}
	return nil
}

func (c *collector) records() []Record {
	var out []Record
	for _, b := range c.batches {
		out = append(out, b.Records...)
	}
	return out
}

// pgTest is a server with a password file for its role.
type pgTest struct {
	pg           *testutil.Postgres
	passwordFile string
}

func startPostgres(t *testing.T) *pgTest {
	t.Helper()
	pg := testutil.StartPostgres(t)
	file := filepath.Join(t.TempDir(), "pgpassword")
	if err := os.WriteFile(file, []byte(pg.Password+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return &pgTest{pg: pg, passwordFile: file}
}

func (p *pgTest) spec(query, column string) *structs.PostgresSource {
	return &structs.PostgresSource{Conn: p.pg.ConnString(), Password: structs.Secret{File: p.passwordFile},
		Query: query, IncrementalColumn: column}
}

func (p *pgTest) reader(t *testing.T, query, column string) Reader {
	t.Helper()
	r, err := NewPostgres("src", p.spec(query, column), Env{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return r
}

// Runs of a reader, with rows added between them, read every row once: a
// page boundary inside a run of equal incremental values neither skips nor
// repeats rows, for each kind of incremental column, and a read stopped by
// a failed commit goes on from the committed position.
func TestPostgres_ReadsIncrementally(t *testing.T) {
	p := startPostgres(t)
	base := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	cases := []struct {
		name     string
		colType  string
		value    func(i int) any // the incremental value of row i; rows are inserted in i order
		maxBatch int
	}{
		{"timestamptz distinct", "timestamptz", func(i int) any { return base.Add(time.Duration(i) * time.Second) }, 7},
		{"timestamptz runs across pages", "timestamptz", func(i int) any { return base.Add(time.Duration(i/3) * time.Minute) }, 7},
		{"timestamptz runs longer than a page", "timestamptz", func(i int) any { return base.Add(time.Duration(i/10) * time.Minute) }, 4},
		{"timestamptz all one value per run", "timestamptz", func(i int) any { return base.Add(time.Duration(i/20) * time.Hour) }, 5},
		{"timestamp microseconds", "timestamp", func(i int) any { return base.Add(time.Duration(i/2) * time.Microsecond) }, 3},
		{"bigint", "bigint", func(i int) any { return int64(1<<40 + i/4) }, 6},
		{"integer", "integer", func(i int) any { return int32(i) }, 10},
		{"numeric fractions", "numeric(12,3)", func(i int) any { return fmt.Sprintf("%d.%03d", i/5, i%5*7) }, 4},
		{"numeric equal values written apart", "numeric", func(i int) any { return fmt.Sprintf("%d%s", i/3, []string{".0", ".00", ""}[i%3]) }, 5},
		{"text", "text", func(i int) any { return fmt.Sprintf("key-%05d", i/2) }, 5},
		{"date", "date", func(i int) any { return base.AddDate(0, 0, i/6) }, 4},
	}
	admin := p.pg.Superuser(t, p.pg.Database)
	for n, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			table := fmt.Sprintf("inc_%d", n)
			p.pg.Exec(t, fmt.Sprintf("CREATE TABLE %s (id int PRIMARY KEY, k %s, payload text)", table, tc.colType))
			p.pg.Exec(t, fmt.Sprintf("GRANT SELECT ON %s TO %s", table, p.pg.User))
			// Rows are added in whole runs of equal values: a row added
			// later with a value the position has passed is never read
			// (the watermark's known limit), which is not under test here.
			insert := func(from, to int) {
				for i := from; i < to; i++ {
					if _, err := admin.Exec(context.Background(), fmt.Sprintf("INSERT INTO %s VALUES ($1, $2, $3)", table), i, tc.value(i), fmt.Sprintf("row %d", i)); err != nil {
						t.Fatal(err)
					}
				}
			}
			r := p.reader(t, "SELECT id, k, payload FROM "+table, "k")
			seen := map[int64]int{}
			pos := Position{}
			run := func(failAt int) error {
				c := newCollector(pos)
				c.failAt = failAt
				err := r.Read(context.Background(), pos, tc.maxBatch, c.emit)
				for _, b := range c.batches {
					if len(b.Records) > tc.maxBatch && !oneValue(b.Records, "k") {
						t.Errorf("a batch of %d records (max %d) holds more than one incremental value", len(b.Records), tc.maxBatch)
					}
					for _, rec := range b.Records {
						seen[rec["id"].(int64)]++
					}
				}
				pos = c.pos
				return err
			}
			insert(0, 60)
			if err := run(0); err != nil {
				t.Fatal(err)
			}
			insert(60, 120)
			// A commit fails mid-read: the read stops, and the next one
			// takes up from what was committed.
			if err := run(2); !errors.Is(err, errNotCommitted) {
				t.Fatalf("Read with a failing commit: %v, want the commit's error", err)
			}
			if err := run(0); err != nil {
				t.Fatal(err)
			}
			insert(120, 180)
			for range 2 { // the second run finds nothing new
				if err := run(0); err != nil {
					t.Fatal(err)
				}
			}
			for i := range 180 {
				if seen[int64(i)] != 1 {
					t.Errorf("row %d read %d times, want once", i, seen[int64(i)])
				}
			}
			if len(seen) != 180 {
				t.Errorf("read %d distinct rows, want 180", len(seen))
			}
		})
	}
}

func oneValue(recs []Record, col string) bool {
	for _, r := range recs[1:] {
		if !reflect.DeepEqual(r[col], recs[0][col]) {
			return false
		}
	}
	return true
}

// The position is text that names the last row's incremental value: a
// timestamp in RFC 3339 UTC, whatever the session's time zone.
func TestPostgres_PositionText(t *testing.T) {
	p := startPostgres(t)
	// A session in another zone must not shift timestamps or watermarks.
	p.pg.Exec(t, fmt.Sprintf("ALTER ROLE %s SET timezone = 'Asia/Tokyo'", p.pg.User))
	p.pg.Exec(t, "CREATE TABLE marks (id int, tz timestamptz, ts timestamp, n bigint, x numeric, s text, d date)")
	p.pg.Exec(t, "GRANT SELECT ON marks TO "+p.pg.User)
	p.pg.Exec(t, `INSERT INTO marks VALUES (1, '2026-03-01 12:00:00.123456+00', '2026-03-01 12:00:00.5', 9007199254740993, 12345678901234567890.5, 'b', '2026-03-01'),
		(2, '2026-03-01 10:00:00+00', '2026-03-01 10:00:00', 5, 1.25, 'a', '2026-02-01')`)
	cases := []struct{ column, want string }{
		{"tz", "2026-03-01T12:00:00.123456Z"},
		{"ts", "2026-03-01T12:00:00.5Z"},
		{"n", "9007199254740993"},
		{"x", "12345678901234567890.5"},
		{"s", "b"},
		{"d", "2026-03-01"},
	}
	for _, tc := range cases {
		t.Run(tc.column, func(t *testing.T) {
			r := p.reader(t, "SELECT * FROM marks", tc.column)
			c := newCollector(nil)
			if err := r.Read(context.Background(), Position{}, 10, c.emit); err != nil {
				t.Fatal(err)
			}
			if got := c.pos[""]; got != tc.want {
				t.Fatalf("position %q, want %q", got, tc.want)
			}
			// Read from it again: the watermark casts back exactly, so the
			// last row is not read again.
			again := newCollector(c.pos)
			if err := r.Read(context.Background(), c.pos, 10, again.emit); err != nil {
				t.Fatal(err)
			}
			if n := len(again.records()); n != 0 {
				t.Fatalf("read %d rows past the last one: %v", n, again.records())
			}
		})
	}
}

// Row values become Record types; NULL is nil, and a NULL incremental value
// is not read.
func TestPostgres_Types(t *testing.T) {
	p := startPostgres(t)
	p.pg.Exec(t, fmt.Sprintf("ALTER ROLE %s SET timezone = 'America/New_York'", p.pg.User))
	p.pg.Exec(t, `CREATE TABLE typed (id bigint, i2 smallint, i4 integer, f4 real, f8 double precision, num numeric(10,2),
		ok boolean, t text, vc varchar(10), ch char(3), tz timestamptz, ts timestamp, d date, u uuid, j json, jb jsonb,
		iv interval, arr int[])`)
	p.pg.Exec(t, "GRANT SELECT ON typed TO "+p.pg.User)
	p.pg.Exec(t, `INSERT INTO typed VALUES (1, -2, 40000, 1.5, -0.25, 12.34, true, 'héllo', 'vc', 'ab',
		'2026-03-01 12:00:00.25+02', '2026-03-01 12:00:00', '2026-03-01', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11',
		'{"b": 1,  "a": [1]}', '{"b": 1, "a": [1]}', '1 day 2 hours', '{1,2}')`)
	p.pg.Exec(t, `INSERT INTO typed (id) VALUES (2)`)
	p.pg.Exec(t, `INSERT INTO typed (id) VALUES (NULL)`)
	r := p.reader(t, "SELECT * FROM typed -- a comment ends the query", "id")
	c := newCollector(nil)
	if err := r.Read(context.Background(), Position{}, 10, c.emit); err != nil {
		t.Fatal(err)
	}
	recs := c.records()
	if len(recs) != 2 {
		t.Fatalf("read %d rows, want 2 (the row with a NULL id is not read): %v", len(recs), recs)
	}
	want := Record{"id": int64(1), "i2": int64(-2), "i4": int64(40000), "f4": 1.5, "f8": -0.25, "num": 12.34,
		"ok": true, "t": "héllo", "vc": "vc", "ch": "ab ",
		"tz": time.Date(2026, 3, 1, 10, 0, 0, 250_000_000, time.UTC), "ts": time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC),
		"d": time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC), "u": "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11",
		"j": `{"b": 1,  "a": [1]}`, "jb": `{"a": [1], "b": 1}`, "iv": "1 day 02:00:00", "arr": "{1,2}"}
	for k, v := range want {
		if got := recs[0][k]; !reflect.DeepEqual(got, v) {
			t.Errorf("%s = %#v (%T), want %#v (%T)", k, got, got, v, v)
		}
	}
	if tz, ok := recs[0]["tz"].(time.Time); ok && tz.Location() != time.UTC {
		t.Errorf("tz is in %v, want UTC", tz.Location())
	}
	for k, v := range recs[1] {
		if k != "id" && v != nil {
			t.Errorf("NULL %s = %#v, want nil", k, v)
		}
	}
	if len(recs[1]) != len(want) {
		t.Errorf("a row of NULLs has %d columns, want %d", len(recs[1]), len(want))
	}
}

// A credential that cannot be read fails the reader at once; a wrong
// password fails each Read with ErrAuth, never showing a password, until
// the password is right, without a new reader.
func TestPostgres_Credentials(t *testing.T) {
	p := startPostgres(t)
	p.pg.Exec(t, "CREATE TABLE creds (id int)")
	p.pg.Exec(t, "GRANT SELECT ON creds TO "+p.pg.User)
	p.pg.Exec(t, "INSERT INTO creds VALUES (1), (2)")
	query := "SELECT id FROM creds"

	t.Run("missing", func(t *testing.T) {
		missing := filepath.Join(t.TempDir(), "no-such-file")
		cases := []struct {
			name   string
			secret structs.Secret
			env    Env
			names  string
		}{
			{"file", structs.Secret{File: missing}, Env{}, missing},
			{"env", structs.Secret{Env: "KILN_TEST_PG_PASSWORD"}, Env{Getenv: func(string) string { return "" }}, "KILN_TEST_PG_PASSWORD"},
		}
		for _, tc := range cases {
			t.Run(tc.name, func(t *testing.T) {
				spec := p.spec(query, "id")
				spec.Password = tc.secret
				_, err := NewPostgres("src", spec, tc.env)
				if !errors.Is(err, ErrSecret) || !strings.Contains(err.Error(), tc.names) {
					t.Fatalf("NewPostgres: %v, want ErrSecret naming %s", err, tc.names)
				}
			})
		}
	})

	// read runs a Read and checks that an error names the server and shows
	// none of the passwords.
	read := func(t *testing.T, r Reader, secrets ...string) (int, error) {
		t.Helper()
		c := newCollector(nil)
		err := r.Read(context.Background(), Position{}, 10, c.emit)
		if err != nil {
			t.Logf("Read: %v", err)
			addr := fmt.Sprintf("%s:%d/%s", p.pg.Host, p.pg.Port, p.pg.Database)
			if !strings.Contains(err.Error(), addr) {
				t.Errorf("error %q does not name %s", err, addr)
			}
			for _, s := range secrets {
				if strings.Contains(err.Error(), s) {
					t.Errorf("error %q shows the password %q", err, s)
				}
			}
		}
		return len(c.records()), err
	}
	wantAuthFailed := func(t *testing.T, err error) {
		t.Helper()
		if !errors.Is(err, ErrAuth) || !strings.Contains(err.Error(), "authentication failed") {
			t.Fatalf("Read with a wrong password: %v, want ErrAuth saying authentication failed", err)
		}
	}

	t.Run("wrong in the file", func(t *testing.T) {
		file := filepath.Join(t.TempDir(), "pw")
		wrong := "wrong-" + p.pg.Password
		os.WriteFile(file, []byte(wrong), 0o600)
		spec := p.spec(query, "id")
		spec.Password = structs.Secret{File: file}
		r, err := NewPostgres("src", spec, Env{})
		if err != nil {
			t.Fatal(err)
		}
		defer r.Close()
		_, err = read(t, r, wrong, p.pg.Password)
		wantAuthFailed(t, err)
		// The operator fixes the file; the same reader reads.
		os.WriteFile(file, []byte(p.pg.Password+"\n"), 0o600)
		if n, err := read(t, r, p.pg.Password); err != nil || n != 2 {
			t.Fatalf("Read after the password was fixed: %d rows, %v; want 2 rows", n, err)
		}
	})

	t.Run("changed on the server", func(t *testing.T) {
		r := p.reader(t, query, "id")
		if n, err := read(t, r, p.pg.Password); err != nil || n != 2 {
			t.Fatalf("first Read: %d rows, %v", n, err)
		}
		// The password is rotated and the reader's connection dropped: a
		// Read fails on the dead connection, the next fails to connect with
		// the old password, and once the new one is in the file, reads.
		rotated := "rotated-" + p.pg.Password
		p.pg.SetPassword(t, p.pg.User, rotated)
		p.pg.Exec(t, "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = $1", p.pg.User)
		if _, err := read(t, r, p.pg.Password, rotated); err == nil {
			t.Fatal("Read on a terminated connection succeeded")
		}
		_, err := read(t, r, p.pg.Password, rotated)
		wantAuthFailed(t, err)
		os.WriteFile(p.passwordFile, []byte(rotated), 0o600)
		if n, err := read(t, r, rotated); err != nil || n != 2 {
			t.Fatalf("Read after the file got the new password: %d rows, %v; want 2 rows", n, err)
		}
	})

	t.Run("role may not log in", func(t *testing.T) {
		// SQLSTATE 28000, not 28P01: the server refuses the role itself.
		p.pg.Exec(t, "ALTER ROLE "+p.pg.User+" NOLOGIN")
		t.Cleanup(func() { p.pg.Exec(t, "ALTER ROLE "+p.pg.User+" LOGIN") })
		r := p.reader(t, query, "id")
		if _, err := read(t, r, p.pg.Password); !errors.Is(err, ErrAuth) {
			t.Fatalf("Read as a role without LOGIN: %v, want ErrAuth", err)
		}
	})
}

// A query without the incremental column fails with an error naming it
// and the query's columns.
func TestPostgres_UnknownIncrementalColumn(t *testing.T) {
	p := startPostgres(t)
	r := p.reader(t, "SELECT 1 AS a, 2 AS b", "updated_at")
	err := r.Read(context.Background(), Position{}, 10, newCollector(nil).emit)
	t.Logf("Read: %v", err)
	if err == nil || !strings.Contains(err.Error(), `"updated_at"`) || !strings.Contains(err.Error(), `"a" "b"`) {
		t.Fatalf("Read: %v, want an error naming updated_at and the columns a, b", err)
	}
}
