package chembed

import (
	"fmt"
	"reflect"
	"strconv"
	"strings"
	"time"
)

// chType is a parsed ClickHouse column type, enough to scan and render the
// types this project uses.
type chType struct {
	name string // as the server spells it, e.g. "LowCardinality(String)"
	base string // "UInt64", "String", "DateTime", "Array", "Nullable", "Enum8", …
	elem *chType
	elts []*chType      // Tuple elements
	loc  *time.Location // Date/DateTime zone
	prec int            // DateTime64 precision
}

// parseType parses a type name; tz is the zone of a DateTime without one.
func parseType(name string, tz *time.Location) (*chType, error) {
	name = strings.TrimSpace(name)
	t := &chType{name: name}
	base, args, hasArgs := strings.Cut(name, "(")
	t.base = strings.TrimSpace(base)
	if hasArgs {
		if !strings.HasSuffix(args, ")") {
			return nil, fmt.Errorf("chembed: cannot parse type %q", name)
		}
		args = strings.TrimSpace(args[:len(args)-1])
	}
	switch t.base {
	case "LowCardinality", "SimpleAggregateFunction":
		inner := args
		if t.base == "SimpleAggregateFunction" {
			_, inner, _ = strings.Cut(args, ",")
		}
		e, err := parseType(inner, tz)
		if err != nil {
			return nil, err
		}
		e.name = name
		return e, nil
	case "Nullable", "Array":
		e, err := parseType(args, tz)
		if err != nil {
			return nil, err
		}
		t.elem = e
	case "Tuple":
		// Unnamed tuples (what groupArray((a, b)) returns); scanned, as
		// clickhouse-go scans them, into []any.
		for _, part := range splitTopLevel(args) {
			e, err := parseType(part, tz)
			if err != nil {
				return nil, err
			}
			t.elts = append(t.elts, e)
		}
	case "DateTime", "Date", "Date32":
		t.loc = tz
		if t.base == "DateTime" && args != "" {
			loc, err := loadZone(args)
			if err != nil {
				return nil, err
			}
			t.loc = loc
		}
	case "DateTime64":
		t.loc = tz
		p, zone, _ := strings.Cut(args, ",")
		n, err := strconv.Atoi(strings.TrimSpace(p))
		if err != nil || n < 0 || n > 9 {
			return nil, fmt.Errorf("chembed: cannot parse type %q", name)
		}
		t.prec = n
		if strings.TrimSpace(zone) != "" {
			loc, err := loadZone(zone)
			if err != nil {
				return nil, err
			}
			t.loc = loc
		}
	}
	return t, nil
}

// splitTopLevel splits a type's argument list at the commas outside
// parentheses.
func splitTopLevel(args string) []string {
	var out []string
	depth, start := 0, 0
	for i, r := range args {
		switch r {
		case '(':
			depth++
		case ')':
			depth--
		case ',':
			if depth == 0 {
				out = append(out, args[start:i])
				start = i + 1
			}
		}
	}
	return append(out, args[start:])
}

func loadZone(quoted string) (*time.Location, error) {
	z := strings.Trim(strings.TrimSpace(quoted), "'")
	loc, err := time.LoadLocation(z)
	if err != nil {
		return nil, fmt.Errorf("chembed: time zone %q: %w", z, err)
	}
	return loc, nil
}

var (
	typeTime  = reflect.TypeOf(time.Time{})
	typeAny   = reflect.TypeOf((*any)(nil)).Elem()
	typeBytes = reflect.TypeOf([]byte(nil))
)

// numericTypes are the Go types ClickHouse's fixed-size scalars scan into.
var numericTypes = map[string]reflect.Type{
	"UInt8": reflect.TypeOf(uint8(0)), "UInt16": reflect.TypeOf(uint16(0)),
	"UInt32": reflect.TypeOf(uint32(0)), "UInt64": reflect.TypeOf(uint64(0)),
	"Int8": reflect.TypeOf(int8(0)), "Int16": reflect.TypeOf(int16(0)),
	"Int32": reflect.TypeOf(int32(0)), "Int64": reflect.TypeOf(int64(0)),
	"Float32": reflect.TypeOf(float32(0)), "Float64": reflect.TypeOf(float64(0)),
	"Bool": reflect.TypeOf(false),
}

// scanType is the Go type a value of t scans into, as clickhouse-go reports it.
func (t *chType) scanType() reflect.Type {
	if rt, ok := numericTypes[t.base]; ok {
		return rt
	}
	switch t.base {
	case "Date", "Date32", "DateTime", "DateTime64":
		return typeTime
	case "Nullable":
		return reflect.PointerTo(t.elem.scanType())
	case "Array":
		return reflect.SliceOf(t.elem.scanType())
	case "Tuple":
		return reflect.TypeOf([]any(nil))
	case "String", "FixedString", "Enum8", "Enum16", "UUID", "IPv4", "IPv6", "Decimal", "Decimal32", "Decimal64", "Decimal128", "Decimal256", "Nothing":
		return reflect.TypeOf("")
	}
	return typeAny
}

func (t *chType) intBits() (bits int, signed, ok bool) {
	switch t.base {
	case "UInt8":
		return 8, false, true
	case "UInt16":
		return 16, false, true
	case "UInt32":
		return 32, false, true
	case "UInt64":
		return 64, false, true
	case "Int8":
		return 8, true, true
	case "Int16":
		return 16, true, true
	case "Int32":
		return 32, true, true
	case "Int64":
		return 64, true, true
	}
	return 0, false, false
}
