package data

import (
	"context"
	"errors"
	"fmt"
	"math/big"
	"net"
	"strconv"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/kilnml/kiln/raftfsm/structs"
)

// postgresCloseTimeout bounds the goodbye sent when a connection is closed.
const postgresCloseTimeout = 5 * time.Second

// postgresReader reads a query incrementally over one connection, made on
// the first Read and made again after any failure.
type postgresReader struct {
	name string
	spec structs.PostgresSource
	env  Env
	cfg  *pgx.ConnConfig
	addr string // host:port/database, for errors

	// mu guards conn and column, and is held through a Read, so that Close
	// waits for a Read in progress (whose context its owner has ended).
	mu   sync.Mutex
	conn *pgx.Conn
	// column is the incremental column as the query gives it; learned once
	// per connection, the query's result type being fixed.
	column *incrementalColumn
	closed bool
}

// incrementalColumn is what a read needs of the incremental column.
type incrementalColumn struct {
	ident string // quoted identifier
	// sqlType is the type's name as a cast takes it ("timestamp with time
	// zone"): the watermark is sent as text and cast to it.
	sqlType string
}

// NewPostgres returns the reader of a PostgreSQL source. The password is
// read from its file or variable now, so that a missing one fails the
// source at once; it is read again at every connection, so that a rotated
// password is taken without a new reader. Nothing is connected until Read.
func NewPostgres(name string, spec *structs.PostgresSource, env Env) (Reader, error) {
	if spec == nil {
		return nil, fmt.Errorf("data: postgres source %q: no spec", name)
	}
	if spec.IncrementalColumn == "" {
		return nil, fmt.Errorf("data: postgres source %q: no incremental_column", name)
	}
	if _, err := env.Resolve("postgres.password", spec.Password); err != nil {
		return nil, fmt.Errorf("data: postgres source %q: %w", name, err)
	}
	cfg, err := pgx.ParseConfig(spec.Conn)
	if err != nil {
		// pgconn's message shows the connection string with any password
		// masked; validation keeps one out of it anyway.
		return nil, fmt.Errorf("data: postgres source %q: conn: %v", name, err)
	}
	r := &postgresReader{name: name, spec: *spec, env: env, cfg: cfg}
	r.addr = net.JoinHostPort(cfg.Host, strconv.Itoa(int(cfg.Port))) + "/" + cfg.Database
	return r, nil
}

// pgRow is one row read: its record, and its incremental column's value as
// watermark text and as the key that tells equal values.
type pgRow struct {
	rec  Record
	mark string
	// key is equal for values PostgreSQL finds equal, which their text
	// may not be: numeric 1.0 and 1.00, float -0 and 0.
	key string
}

// Read selects the rows past from[""] in the incremental column's order,
// maxBatch at a time. A batch never ends inside a run of rows that share an
// incremental value: the next query starts after the batch's last value,
// and would skip the rest of such a run. So a full page gives back its
// trailing run to the next query, and a page that is one run whole is
// followed by a query for all of that value's rows, emitted as one batch
// however many there are. Rows whose incremental value is NULL are never
// read: no watermark is past them.
func (r *postgresReader) Read(ctx context.Context, from Position, maxBatch int, emit Emit) error {
	if maxBatch < 1 {
		return fmt.Errorf("data: batch size %d: it must be at least 1", maxBatch)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return fmt.Errorf("data: postgres source %q: reader is closed", r.name)
	}
	mark, started := from[""]
	for {
		rows, err := r.pageLocked(ctx, mark, started, maxBatch)
		if err != nil {
			return err
		}
		if len(rows) == 0 {
			return nil
		}
		if len(rows) < maxBatch {
			return r.emit(ctx, emit, rows)
		}
		last := rows[len(rows)-1]
		cut := len(rows)
		for cut > 0 && rows[cut-1].key == last.key {
			cut--
		}
		if cut == 0 {
			if rows, err = r.runLocked(ctx, last.mark); err != nil {
				return err
			}
			if len(rows) == 0 {
				// Deleted between the two queries; the page query cannot
				// be trusted to move on either.
				return fmt.Errorf("data: postgres source %q at %s: the rows with %s = %s were gone when read again; the next read starts over from the position", r.name, r.addr, r.spec.IncrementalColumn, last.mark)
			}
			cut = len(rows)
		}
		if err := r.emit(ctx, emit, rows[:cut]); err != nil {
			return err
		}
		mark, started = rows[cut-1].mark, true
	}
}

// emit hands rows over as one batch whose position is the last row's value.
func (r *postgresReader) emit(ctx context.Context, emit Emit, rows []pgRow) error {
	b := Batch{Records: make([]Record, len(rows)), Advance: Position{"": rows[len(rows)-1].mark}}
	for i, row := range rows {
		b.Records[i] = row.rec
	}
	return emit(ctx, b)
}

// pageLocked reads up to limit rows past mark (from the first when not
// started). The source query is wrapped on lines of its own, here and in
// the other queries, so that a trailing "-- comment" in it cannot swallow
// the wrapping.
func (r *postgresReader) pageLocked(ctx context.Context, mark string, started bool, limit int) ([]pgRow, error) {
	col, err := r.connectLocked(ctx)
	if err != nil {
		return nil, err
	}
	sql := fmt.Sprintf("SELECT * FROM (\n%s\n) AS kiln_src WHERE %s IS NOT NULL ORDER BY %s LIMIT %d", r.spec.Query, col.ident, col.ident, limit)
	args := []any{}
	if started {
		sql = fmt.Sprintf("SELECT * FROM (\n%s\n) AS kiln_src WHERE %s > CAST($1::text AS %s) ORDER BY %s LIMIT %d", r.spec.Query, col.ident, col.sqlType, col.ident, limit)
		args = append(args, mark)
	}
	return r.queryLocked(ctx, sql, args...)
}

// runLocked reads every row whose incremental value is mark.
func (r *postgresReader) runLocked(ctx context.Context, mark string) ([]pgRow, error) {
	col := r.column
	sql := fmt.Sprintf("SELECT * FROM (\n%s\n) AS kiln_src WHERE %s = CAST($1::text AS %s)", r.spec.Query, col.ident, col.sqlType)
	return r.queryLocked(ctx, sql, mark)
}

// queryLocked runs a query of the wrapped source query and converts its
// rows. Results come in text format: every type has one, so a type Kiln
// does not know still arrives as PostgreSQL writes it.
func (r *postgresReader) queryLocked(ctx context.Context, sql string, args ...any) ([]pgRow, error) {
	rows, err := r.conn.Query(ctx, sql, append([]any{pgx.QueryResultFormats{pgx.TextFormatCode}}, args...)...)
	if err != nil {
		return nil, r.failLocked("query", err)
	}
	defer rows.Close()
	fields := rows.FieldDescriptions()
	markAt := -1
	for i, f := range fields {
		if f.Name == r.spec.IncrementalColumn {
			markAt = i
		}
	}
	var out []pgRow
	for rows.Next() {
		raw := rows.RawValues()
		rec := make(Record, len(fields))
		row := pgRow{rec: rec}
		for i, f := range fields {
			v := r.value(f.DataTypeOID, raw[i])
			rec[f.Name] = v
			if i == markAt {
				row.mark = watermarkText(f.DataTypeOID, v, raw[i])
				row.key = equalityKey(f.DataTypeOID, v, row.mark)
			}
		}
		out = append(out, row)
	}
	if err := rows.Err(); err != nil {
		return nil, r.failLocked("query", err)
	}
	return out, nil
}

// value converts one text-format value to a Record type. Integers are
// int64; floating and numeric values float64 (a numeric wider than a
// float64 loses digits); timestamps and dates a UTC time.Time; uuid, json,
// text and any other type the text PostgreSQL writes.
func (r *postgresReader) value(oid uint32, raw []byte) any {
	if raw == nil {
		return nil
	}
	text := string(raw)
	switch oid {
	case pgtype.Int2OID, pgtype.Int4OID, pgtype.Int8OID, pgtype.OIDOID:
		if i, err := strconv.ParseInt(text, 10, 64); err == nil {
			return i
		}
	case pgtype.Float4OID, pgtype.Float8OID, pgtype.NumericOID:
		if f, err := strconv.ParseFloat(text, 64); err == nil || errors.Is(err, strconv.ErrRange) {
			return f // out of range: ±Inf, as near as a float64 gets
		}
	case pgtype.BoolOID:
		return text == "t"
	case pgtype.TimestamptzOID, pgtype.TimestampOID, pgtype.DateOID:
		var t time.Time
		// infinity does not scan into a time.Time: it stays text.
		if err := r.conn.TypeMap().Scan(oid, pgx.TextFormatCode, raw, &t); err == nil {
			return t.UTC()
		}
	}
	return text
}

// watermarkText is the incremental value as the position keeps it and the
// next query casts it back: a timestamp in RFC 3339 in UTC (exact to the
// microsecond PostgreSQL keeps, whatever the session's time zone), a date
// as 2006-01-02, anything else as PostgreSQL writes it.
func watermarkText(oid uint32, v any, raw []byte) string {
	if t, ok := v.(time.Time); ok {
		if oid == pgtype.DateOID {
			return t.Format(time.DateOnly)
		}
		return t.Format(time.RFC3339Nano)
	}
	return string(raw)
}

// equalityKey is a value's key for telling runs of equal values apart:
// numbers by their value (the numeric's exactly), anything else by its
// watermark text.
func equalityKey(oid uint32, v any, mark string) string {
	switch oid {
	case pgtype.NumericOID:
		if q, ok := new(big.Rat).SetString(mark); ok {
			return q.RatString()
		}
	case pgtype.Float4OID, pgtype.Float8OID:
		if f, ok := v.(float64); ok {
			return strconv.FormatFloat(f+0, 'g', -1, 64) // +0 makes -0 0
		}
	}
	return mark
}

// connectLocked makes the connection if there is none, and learns the
// incremental column's type on it.
func (r *postgresReader) connectLocked(ctx context.Context) (*incrementalColumn, error) {
	if r.conn != nil && !r.conn.IsClosed() {
		return r.column, nil
	}
	password, err := r.env.Resolve("postgres.password", r.spec.Password)
	if err != nil {
		return nil, fmt.Errorf("data: postgres source %q: %w", r.name, err)
	}
	cfg := r.cfg.Copy()
	if password != "" {
		cfg.Password = password
	}
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return nil, r.describe("connect", err)
	}
	r.conn = conn
	col, err := r.describeColumnLocked(ctx)
	if err != nil {
		return nil, err
	}
	r.column = col
	return col, nil
}

// describeColumnLocked finds the incremental column among the query's
// result columns, and its type's name, without running the query.
func (r *postgresReader) describeColumnLocked(ctx context.Context) (*incrementalColumn, error) {
	desc, err := r.conn.PgConn().Prepare(ctx, "", "SELECT * FROM (\n"+r.spec.Query+"\n) AS kiln_src", nil)
	if err != nil {
		return nil, r.failLocked("query", err)
	}
	var names []string
	for _, f := range desc.Fields {
		if f.Name != r.spec.IncrementalColumn {
			names = append(names, f.Name)
			continue
		}
		col := &incrementalColumn{ident: pgx.Identifier{f.Name}.Sanitize()}
		// format_type quotes a user type's name as a cast needs it.
		if err := r.conn.QueryRow(ctx, "SELECT format_type($1::oid, NULL)", f.DataTypeOID).Scan(&col.sqlType); err != nil {
			return nil, r.failLocked("query", err)
		}
		return col, nil
	}
	r.closeLocked()
	return nil, fmt.Errorf("data: postgres source %q at %s: incremental_column %q is not a column of the query (its columns: %q)", r.name, r.addr, r.spec.IncrementalColumn, names)
}

// failLocked drops the connection after a failure on it, so that the next
// Read makes a new one, and describes err.
func (r *postgresReader) failLocked(what string, err error) error {
	r.closeLocked()
	return r.describe(what, err)
}

// describe names the source and its address in err. pgx's errors carry the
// host, user and database, never the password. A refused login
// (invalid_password 28P01, invalid_authorization_specification 28000: no
// pg_hba.conf entry, a role that may not log in) wraps ErrAuth, which tells
// the operator what to fix; the caller retries with backoff.
func (r *postgresReader) describe(what string, err error) error {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && (pgErr.Code == "28P01" || pgErr.Code == "28000") {
		return fmt.Errorf("data: postgres source %q at %s: %s: %w: %w", r.name, r.addr, what, ErrAuth, err)
	}
	return fmt.Errorf("data: postgres source %q at %s: %s: %w", r.name, r.addr, what, err)
}

func (r *postgresReader) closeLocked() {
	if r.conn == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), postgresCloseTimeout)
	defer cancel()
	r.conn.Close(ctx)
	r.conn, r.column = nil, nil
}

// Close closes the connection, waiting for a Read in progress to return.
func (r *postgresReader) Close() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.closed = true
	r.closeLocked()
	return nil
}
