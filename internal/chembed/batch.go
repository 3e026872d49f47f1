package chembed

import (
	"context"
	"database/sql/driver"
	"fmt"
	"math"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/column"
	chdriver "github.com/ClickHouse/clickhouse-go/v2/lib/driver"
)

var (
	insertRE = regexp.MustCompile(`(?is)^\s*INSERT\s+INTO\s+([A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)?)\s*\(([^()]*)\)\s*(?:VALUES)?\s*;?\s*$`)
	identRE  = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)
)

// batch buffers rows as rendered VALUES tuples; Send writes them in one
// INSERT. Every value is rendered by typedLiteral for its column's type.
type batch struct {
	c      *conn
	ctx    context.Context
	insert string // INSERT INTO t (cols) VALUES
	names  []string
	types  []*chType
	rows   []string
	sent   bool
}

func (c *conn) prepareBatch(ctx context.Context, query string) (*batch, error) {
	m := insertRE.FindStringSubmatch(query)
	if m == nil {
		return nil, fmt.Errorf("chembed: PrepareBatch wants INSERT INTO [db.]table (col, …) with the columns listed, got %q", query)
	}
	db, table, ok := strings.Cut(m[1], ".")
	dbExpr := "currentDatabase()"
	if ok {
		dbExpr = quote(db)
	} else {
		table = db
	}
	var names []string
	for _, n := range strings.Split(m[2], ",") {
		n = strings.Trim(strings.TrimSpace(n), "`\"")
		if !identRE.MatchString(n) {
			return nil, fmt.Errorf("chembed: PrepareBatch: bad column name %q", n)
		}
		names = append(names, n)
	}
	r, err := c.query(ctx, "SELECT name, type FROM system.columns WHERE database = "+dbExpr+" AND table = "+quote(table))
	if err != nil {
		return nil, fmt.Errorf("chembed: PrepareBatch: read columns of %s: %w", m[1], err)
	}
	colTypes := map[string]string{}
	for r.Next() {
		var n, t string
		if err := r.Scan(&n, &t); err != nil {
			return nil, err
		}
		colTypes[n] = t
	}
	if len(colTypes) == 0 {
		return nil, fmt.Errorf("chembed: PrepareBatch: table %s does not exist", m[1])
	}
	b := &batch{c: c, ctx: ctx, names: names,
		insert: "INSERT INTO " + m[1] + " (" + strings.Join(names, ", ") + ") VALUES "}
	for _, n := range names {
		tn, ok := colTypes[n]
		if !ok {
			return nil, fmt.Errorf("chembed: PrepareBatch: table %s has no column %s", m[1], n)
		}
		t, err := parseType(tn, c.tz)
		if err != nil {
			return nil, err
		}
		b.types = append(b.types, t)
	}
	return b, nil
}

func (b *batch) Append(v ...any) error {
	if b.sent {
		return fmt.Errorf("chembed: batch has already been sent")
	}
	if len(v) != len(b.types) {
		return fmt.Errorf("chembed: Append: expected %d arguments, got %d", len(b.types), len(v))
	}
	var s strings.Builder
	s.WriteByte('(')
	for i, x := range v {
		lit, err := typedLiteral(b.types[i], x)
		if err != nil {
			return fmt.Errorf("chembed: Append: column %s (%s): %w", b.names[i], b.types[i].name, err)
		}
		if i > 0 {
			s.WriteString(", ")
		}
		s.WriteString(lit)
	}
	s.WriteByte(')')
	b.rows = append(b.rows, s.String())
	return nil
}

func (b *batch) Send() error {
	if b.sent {
		return fmt.Errorf("chembed: batch has already been sent")
	}
	b.sent = true
	if len(b.rows) == 0 {
		return nil
	}
	err := b.c.exec(b.ctx, b.insert+strings.Join(b.rows, ", "))
	b.rows = nil
	return err
}

func (b *batch) Flush() error {
	if b.sent {
		return fmt.Errorf("chembed: batch has already been sent")
	}
	if len(b.rows) == 0 {
		return nil
	}
	err := b.c.exec(b.ctx, b.insert+strings.Join(b.rows, ", "))
	b.rows = nil
	return err
}

func (b *batch) Abort() error {
	if b.sent {
		return fmt.Errorf("chembed: batch has already been sent")
	}
	b.sent, b.rows = true, nil
	return nil
}

func (b *batch) Close() error {
	b.sent, b.rows = true, nil
	return nil
}

func (b *batch) AppendStruct(any) error {
	return fmt.Errorf("chembed: AppendStruct: %w", ErrUnsupported)
}

func (b *batch) Column(int) chdriver.BatchColumn { return unsupportedColumn{} }
func (b *batch) IsSent() bool                    { return b.sent }
func (b *batch) Rows() int                       { return len(b.rows) }
func (b *batch) Columns() []column.Interface     { return nil }

type unsupportedColumn struct{}

func (unsupportedColumn) Append(any) error {
	return fmt.Errorf("chembed: column-wise batches: %w", ErrUnsupported)
}

func (unsupportedColumn) AppendRow(any) error {
	return fmt.Errorf("chembed: column-wise batches: %w", ErrUnsupported)
}

// typedLiteral renders v for a column of type t, accepting the Go types
// clickhouse-go accepts for it (exact widths; named types of the same kind).
func typedLiteral(t *chType, v any) (string, error) {
	if dv, ok := v.(driver.Valuer); ok {
		if rv := reflect.ValueOf(v); !(rv.Kind() == reflect.Pointer && rv.IsNil()) {
			x, err := dv.Value()
			if err != nil {
				return "", err
			}
			v = x
		}
	}
	rv := reflect.ValueOf(v)
	for rv.IsValid() && rv.Kind() == reflect.Pointer {
		if rv.IsNil() {
			rv = reflect.Value{}
			break
		}
		rv = rv.Elem()
	}
	if !rv.IsValid() {
		if t.base == "Nullable" {
			return "NULL", nil
		}
		return "", fmt.Errorf("NULL into non-Nullable %s", t.name)
	}
	bad := func() (string, error) {
		return "", fmt.Errorf("converting %s to %s is unsupported", rv.Type(), t.name)
	}
	if bits, isSigned, ok := t.intBits(); ok {
		k := rv.Kind()
		switch {
		case k == reflect.Bool && bits == 8 && !isSigned:
			return literal(rv.Bool())
		case isSigned && k == intKinds[bits]:
			return signed(strconv.FormatInt(rv.Int(), 10)), nil
		case !isSigned && k == uintKinds[bits]:
			return strconv.FormatUint(rv.Uint(), 10), nil
		}
		return bad()
	}
	switch t.base {
	case "Nullable":
		return typedLiteral(t.elem, rv.Interface())
	case "Float32", "Float64":
		if (t.base == "Float64" && rv.Kind() == reflect.Float64) || (t.base == "Float32" && rv.Kind() == reflect.Float32) {
			return floatLiteral(rv.Float(), 64), nil
		}
		return bad()
	case "Bool":
		if rv.Kind() == reflect.Bool {
			return literal(rv.Bool())
		}
		return bad()
	case "String", "FixedString", "UUID", "IPv4", "IPv6":
		switch {
		case rv.Kind() == reflect.String:
			return quote(rv.String()), nil
		case rv.Type() == typeBytes:
			return quote(string(rv.Bytes())), nil
		}
		if s, ok := rv.Interface().(fmt.Stringer); ok && t.base != "String" {
			return quote(s.String()), nil
		}
		return bad()
	case "Enum8", "Enum16":
		switch rv.Kind() {
		case reflect.String:
			return quote(rv.String()), nil
		case reflect.Int8, reflect.Int16:
			return signed(strconv.FormatInt(rv.Int(), 10)), nil
		}
		return bad()
	case "Date", "Date32", "DateTime", "DateTime64":
		switch x := rv.Interface().(type) {
		case time.Time:
			return timeLiteral(t, x)
		case string:
			return quote(x), nil
		}
		return bad()
	case "Array":
		if rv.Kind() != reflect.Slice && rv.Kind() != reflect.Array {
			return bad()
		}
		parts := make([]string, rv.Len())
		for i := range parts {
			s, err := typedLiteral(t.elem, rv.Index(i).Interface())
			if err != nil {
				return "", err
			}
			parts[i] = s
		}
		return "[" + strings.Join(parts, ", ") + "]", nil
	}
	return "", fmt.Errorf("column type %s: %w", t.name, ErrUnsupported)
}

var (
	intKinds  = map[int]reflect.Kind{8: reflect.Int8, 16: reflect.Int16, 32: reflect.Int32, 64: reflect.Int64}
	uintKinds = map[int]reflect.Kind{8: reflect.Uint8, 16: reflect.Uint16, 32: reflect.Uint32, 64: reflect.Uint64}
)

// timeLiteral renders x as the column's wall-clock text in the column's zone,
// which the server reads back as the same instant; DateTime keeps whole
// seconds, as clickhouse-go does.
func timeLiteral(t *chType, x time.Time) (string, error) {
	x = x.In(t.loc)
	switch t.base {
	case "Date", "Date32":
		return quote(x.Format("2006-01-02")), nil
	case "DateTime":
		if x.Unix() < 0 || x.Unix() > math.MaxUint32 {
			return "", fmt.Errorf("time %s is outside the DateTime range", x.UTC().Format(time.RFC3339))
		}
		return quote(x.Format("2006-01-02 15:04:05")), nil
	}
	layout := "2006-01-02 15:04:05"
	if t.prec > 0 {
		layout += "." + strings.Repeat("0", t.prec)
	}
	return quote(x.Format(layout)), nil
}
