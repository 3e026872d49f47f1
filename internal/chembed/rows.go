package chembed

import (
	"bytes"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"reflect"
	"strconv"
	"strings"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
)

// resultFormat is how the engine returns rows: a names line, a types line,
// then one JSON array per row.
const resultFormat = "JSONCompactEachRowWithNamesAndTypes"

// rows is a fully read result; chDB hands the whole result back at once.
type rows struct {
	names []string
	types []*chType
	data  [][]any
	pos   int // index of the current row + 1
	err   error
}

func parseResult(out []byte, tz *time.Location) (*rows, error) {
	r := &rows{}
	dec := json.NewDecoder(bytes.NewReader(out))
	dec.UseNumber()
	var names, types []string
	if err := dec.Decode(&names); err != nil {
		if errors.Is(err, io.EOF) {
			return r, nil // a statement without a result
		}
		return nil, fmt.Errorf("chembed: read column names: %w", err)
	}
	if err := dec.Decode(&types); err != nil || len(types) != len(names) {
		return nil, fmt.Errorf("chembed: read column types: %v", err)
	}
	r.names = names
	for _, name := range types {
		t, err := parseType(name, tz)
		if err != nil {
			return nil, err
		}
		r.types = append(r.types, t)
	}
	for {
		var row []any
		if err := dec.Decode(&row); err != nil {
			if errors.Is(err, io.EOF) {
				break
			}
			return nil, fmt.Errorf("chembed: read row %d: %w", len(r.data)+1, err)
		}
		if len(row) != len(names) {
			return nil, fmt.Errorf("chembed: row %d has %d values for %d columns", len(r.data)+1, len(row), len(names))
		}
		r.data = append(r.data, row)
	}
	return r, nil
}

func (r *rows) Next() bool {
	if r.err != nil || r.pos >= len(r.data) {
		r.pos = len(r.data) + 1
		return false
	}
	r.pos++
	return true
}

func (r *rows) Scan(dest ...any) error {
	if r.pos < 1 || r.pos > len(r.data) {
		return errors.New("chembed: Scan called without a current row (call Next first)")
	}
	return scanRow(r.names, r.types, r.data[r.pos-1], dest)
}

func (r *rows) ScanStruct(any) error {
	return fmt.Errorf("chembed: ScanStruct: %w", ErrUnsupported)
}

func (r *rows) ColumnTypes() []driver.ColumnType {
	out := make([]driver.ColumnType, len(r.names))
	for i := range r.names {
		out[i] = columnType{name: r.names[i], t: r.types[i]}
	}
	return out
}

func (r *rows) Totals(...any) error {
	return fmt.Errorf("chembed: Totals: %w", ErrUnsupported)
}

func (r *rows) Columns() []string { return append([]string(nil), r.names...) }
func (r *rows) Close() error      { r.pos = len(r.data) + 1; return nil }
func (r *rows) Err() error        { return r.err }
func (r *rows) HasData() bool     { return len(r.data) > 0 }

type columnType struct {
	name string
	t    *chType
}

func (c columnType) Name() string             { return c.name }
func (c columnType) Nullable() bool           { return c.t.base == "Nullable" }
func (c columnType) ScanType() reflect.Type   { return c.t.scanType() }
func (c columnType) DatabaseTypeName() string { return c.t.name }

// row is QueryRow's result: the first row, sql.ErrNoRows when there is none.
type row struct {
	err error
	r   *rows
}

func (r *row) Err() error { return r.err }

func (r *row) Scan(dest ...any) error {
	if r.err != nil {
		return r.err
	}
	if !r.r.Next() {
		return sql.ErrNoRows
	}
	return r.r.Scan(dest...)
}

func (r *row) ScanStruct(any) error {
	if r.err != nil {
		return r.err
	}
	return fmt.Errorf("chembed: ScanStruct: %w", ErrUnsupported)
}

func scanRow(names []string, types []*chType, values []any, dest []any) error {
	if len(dest) != len(types) {
		return fmt.Errorf("chembed: expected %d destination arguments in Scan, not %d", len(types), len(dest))
	}
	for i, d := range dest {
		if s, ok := d.(sql.Scanner); ok {
			v, err := natural(types[i], values[i])
			if err != nil {
				return fmt.Errorf("chembed: column %s: %w", names[i], err)
			}
			if err := s.Scan(v); err != nil {
				return fmt.Errorf("chembed: column %s: %w", names[i], err)
			}
			continue
		}
		rv := reflect.ValueOf(d)
		if rv.Kind() != reflect.Pointer || rv.IsNil() {
			return fmt.Errorf("chembed: column %s: Scan destination %T is not a non-nil pointer", names[i], d)
		}
		if err := assign(rv.Elem(), types[i], values[i]); err != nil {
			return fmt.Errorf("chembed: column %s: %w", names[i], err)
		}
	}
	return nil
}

// assign stores the JSON value raw of type t into dst, accepting the Go
// types clickhouse-go accepts for t (and named types of the same kind).
func assign(dst reflect.Value, t *chType, raw any) error {
	if dst.Kind() == reflect.Interface && dst.NumMethod() == 0 {
		v, err := natural(t, raw)
		if err != nil {
			return err
		}
		if v == nil {
			dst.SetZero()
		} else {
			dst.Set(reflect.ValueOf(v))
		}
		return nil
	}
	switch t.base {
	case "Nullable":
		if dst.Kind() == reflect.Pointer {
			if raw == nil {
				dst.SetZero()
				return nil
			}
			p := reflect.New(dst.Type().Elem())
			if err := assign(p.Elem(), t.elem, raw); err != nil {
				return err
			}
			dst.Set(p)
			return nil
		}
		if raw == nil {
			dst.SetZero()
			return nil
		}
		return assign(dst, t.elem, raw)
	case "Array":
		list, ok := raw.([]any)
		if !ok {
			return fmt.Errorf("array value %T is not a list", raw)
		}
		if dst.Kind() != reflect.Slice || dst.Type() == typeBytes && t.elem.base != "UInt8" {
			return unsupported(t, dst.Type())
		}
		s := reflect.MakeSlice(dst.Type(), len(list), len(list))
		for i, e := range list {
			if err := assign(s.Index(i), t.elem, e); err != nil {
				return err
			}
		}
		dst.Set(s)
		return nil
	}
	v, err := natural(t, raw)
	if err != nil {
		return err
	}
	if v == nil {
		return unsupported(t, dst.Type())
	}
	rv := reflect.ValueOf(v)
	switch {
	case rv.Type() == dst.Type():
		dst.Set(rv)
	case dst.Kind() == rv.Kind() && dst.Kind() != reflect.Struct:
		dst.Set(rv.Convert(dst.Type())) // a named type over the same kind
	case dst.Kind() == reflect.Bool && t.base == "UInt8":
		dst.SetBool(rv.Uint() != 0)
	case dst.Type() == typeBytes && rv.Kind() == reflect.String:
		dst.SetBytes([]byte(rv.String()))
	default:
		return unsupported(t, dst.Type())
	}
	return nil
}

func unsupported(t *chType, dst reflect.Type) error {
	return fmt.Errorf("converting %s to *%s is unsupported", t.name, dst)
}

// natural converts a JSON value of type t into the Go value clickhouse-go
// would return for it (nil for NULL).
func natural(t *chType, raw any) (any, error) {
	if raw == nil {
		if t.base == "Nullable" || t.base == "Nothing" {
			return nil, nil
		}
		return nil, fmt.Errorf("unexpected NULL in %s", t.name)
	}
	if bits, signed, ok := t.intBits(); ok {
		s, err := numberText(raw)
		if err != nil {
			return nil, err
		}
		if signed {
			n, err := strconv.ParseInt(s, 10, bits)
			if err != nil {
				return nil, fmt.Errorf("%s value %q: %w", t.name, s, err)
			}
			return reflect.ValueOf(n).Convert(t.scanType()).Interface(), nil
		}
		n, err := strconv.ParseUint(s, 10, bits)
		if err != nil {
			return nil, fmt.Errorf("%s value %q: %w", t.name, s, err)
		}
		return reflect.ValueOf(n).Convert(t.scanType()).Interface(), nil
	}
	switch t.base {
	case "Float32", "Float64":
		s, err := numberText(raw)
		if err != nil {
			return nil, err
		}
		bits := 64
		if t.base == "Float32" {
			bits = 32
		}
		// Current releases write NaN and infinities as "nan", "-nan", "inf",
		// "-inf" (quoted); Go's parser wants no sign on NaN.
		if strings.EqualFold(strings.TrimLeft(s, "+-"), "nan") {
			s = "NaN"
		}
		f, err := strconv.ParseFloat(s, bits)
		if err != nil {
			return nil, fmt.Errorf("%s value %q: %w", t.name, s, err)
		}
		if bits == 32 {
			return float32(f), nil
		}
		return f, nil
	case "Bool":
		b, ok := raw.(bool)
		if !ok {
			return nil, fmt.Errorf("%s value %v is not a boolean", t.name, raw)
		}
		return b, nil
	case "DateTime", "DateTime64":
		// date_time_output_format=unix_timestamp: "1767323045" or "1767323045.123".
		s, err := numberText(raw)
		if err != nil {
			return nil, err
		}
		sec, frac, _ := strings.Cut(s, ".")
		n, err := strconv.ParseInt(sec, 10, 64)
		if err != nil {
			return nil, fmt.Errorf("%s value %q: %w", t.name, s, err)
		}
		var ns int64
		if frac != "" {
			f, err := strconv.ParseInt((frac + "000000000")[:9], 10, 64)
			if err != nil {
				return nil, fmt.Errorf("%s value %q: %w", t.name, s, err)
			}
			ns = f
			if strings.HasPrefix(sec, "-") {
				ns = -ns
			}
		}
		return time.Unix(n, ns).In(t.loc), nil
	case "Date", "Date32":
		s, ok := raw.(string)
		if !ok {
			return nil, fmt.Errorf("%s value %v is not a string", t.name, raw)
		}
		d, err := time.ParseInLocation("2006-01-02", s, time.UTC)
		if err != nil {
			return nil, fmt.Errorf("%s value %q: %w", t.name, s, err)
		}
		return d, nil
	case "Array":
		list, ok := raw.([]any)
		if !ok {
			return nil, fmt.Errorf("array value %T is not a list", raw)
		}
		s := reflect.New(t.scanType()).Elem()
		if err := assign(s, t, list); err != nil {
			return nil, err
		}
		return s.Interface(), nil
	case "Nullable":
		return natural(t.elem, raw)
	case "Tuple":
		list, ok := raw.([]any)
		if !ok || len(list) != len(t.elts) {
			return nil, fmt.Errorf("%s value %v is not a list of %d", t.name, raw, len(t.elts))
		}
		out := make([]any, len(list))
		for i, e := range list {
			v, err := natural(t.elts[i], e)
			if err != nil {
				return nil, err
			}
			out[i] = v
		}
		return out, nil
	}
	switch v := raw.(type) {
	case string:
		return v, nil
	case json.Number:
		return v.String(), nil // Decimal and other numbers without a Go type here
	}
	return nil, fmt.Errorf("cannot scan %s (JSON %T)", t.name, raw)
}

func numberText(raw any) (string, error) {
	switch v := raw.(type) {
	case json.Number:
		return v.String(), nil
	case string:
		return v, nil
	}
	return "", fmt.Errorf("value %v (JSON %T) is not a number", raw, raw)
}
