package chembed

import (
	"database/sql/driver"
	"fmt"
	"math"
	"reflect"
	"strconv"
	"strings"
	"time"
)

// quoteReplacer escapes a string for a single-quoted ClickHouse literal.
// NUL must never reach chDB raw (its C API cuts the query there), and
// escaping the other control characters keeps a rendered query on one line.
var quoteReplacer = strings.NewReplacer(
	`\`, `\\`, `'`, `\'`, "\x00", `\0`, "\n", `\n`, "\r", `\r`, "\t", `\t`,
)

func quote(s string) string { return "'" + quoteReplacer.Replace(s) + "'" }

// bind replaces each `?` outside string literals, quoted identifiers and
// comments with args[i] rendered as a SQL literal, as clickhouse-go's
// client-side binding does (`\?` stays a literal `?`). With no args the query
// is returned unchanged.
func bind(query string, args []any) (string, error) {
	if len(args) == 0 {
		return query, nil
	}
	var b strings.Builder
	next := 0
	for i := 0; i < len(query); i++ {
		c := query[i]
		switch {
		case c == '\'' || c == '"' || c == '`':
			end := skipQuoted(query, i)
			b.WriteString(query[i:end])
			i = end - 1
		case c == '-' && strings.HasPrefix(query[i:], "--"):
			end := strings.IndexByte(query[i:], '\n')
			if end < 0 {
				end = len(query) - i
			}
			b.WriteString(query[i : i+end])
			i += end - 1
		case c == '/' && strings.HasPrefix(query[i:], "/*"):
			end := strings.Index(query[i+2:], "*/")
			if end < 0 {
				end = len(query) - i - 2
			} else {
				end += 2
			}
			b.WriteString(query[i : i+2+end])
			i += 2 + end - 1
		case c == '\\' && i+1 < len(query) && query[i+1] == '?':
			b.WriteByte('?')
			i++
		case c == '?':
			if next >= len(args) {
				return "", fmt.Errorf("chembed: bind: more ? placeholders than the %d arguments given", len(args))
			}
			lit, err := literal(args[next])
			if err != nil {
				return "", fmt.Errorf("chembed: bind argument %d: %w", next+1, err)
			}
			b.WriteString(lit)
			next++
		default:
			b.WriteByte(c)
		}
	}
	if next != len(args) {
		return "", fmt.Errorf("chembed: bind: %d arguments given for %d ? placeholders", len(args), next)
	}
	return b.String(), nil
}

// skipQuoted returns the index just past the quoted section opening at i
// (backslash escapes and doubled quotes both allowed).
func skipQuoted(s string, i int) int {
	q := s[i]
	for j := i + 1; j < len(s); j++ {
		switch s[j] {
		case '\\':
			j++
		case q:
			if j+1 < len(s) && s[j+1] == q {
				j++
				continue
			}
			return j + 1
		}
	}
	return len(s)
}

// literal renders an untyped bound argument the way clickhouse-go's binder
// does: strings quoted and escaped, bools as 1/0, times as DateTime (whole
// seconds), slices as arrays, nil as NULL.
func literal(v any) (string, error) {
	if dv, ok := v.(driver.Valuer); ok {
		if rv := reflect.ValueOf(v); rv.Kind() == reflect.Pointer && rv.IsNil() {
			return "NULL", nil
		}
		x, err := dv.Value()
		if err != nil {
			return "", err
		}
		v = x
	}
	switch x := v.(type) {
	case nil:
		return "NULL", nil
	case string:
		return quote(x), nil
	case []byte:
		if x == nil {
			return "NULL", nil
		}
		return quote(string(x)), nil
	case bool:
		if x {
			return "1", nil
		}
		return "0", nil
	case time.Time:
		return "toDateTime(" + strconv.FormatInt(x.Unix(), 10) + ")", nil
	case time.Duration:
		return "", fmt.Errorf("time.Duration: %w (store durations as integers)", ErrUnsupported)
	case float32:
		return floatLiteral(float64(x), 32), nil
	case float64:
		return floatLiteral(x, 64), nil
	case fmt.Stringer:
		if rv := reflect.ValueOf(v); rv.Kind() == reflect.Pointer && rv.IsNil() {
			return "NULL", nil
		}
		return quote(x.String()), nil
	}
	rv := reflect.ValueOf(v)
	switch rv.Kind() {
	case reflect.Pointer:
		if rv.IsNil() {
			return "NULL", nil
		}
		return literal(rv.Elem().Interface())
	case reflect.String:
		return quote(rv.String()), nil
	case reflect.Bool:
		return literal(rv.Bool())
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return signed(strconv.FormatInt(rv.Int(), 10)), nil
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr:
		return strconv.FormatUint(rv.Uint(), 10), nil
	case reflect.Float32, reflect.Float64:
		return floatLiteral(rv.Float(), 64), nil
	case reflect.Slice, reflect.Array:
		parts := make([]string, rv.Len())
		for i := range parts {
			s, err := literal(rv.Index(i).Interface())
			if err != nil {
				return "", err
			}
			parts[i] = s
		}
		return "[" + strings.Join(parts, ", ") + "]", nil
	}
	return "", fmt.Errorf("value of type %T: %w", v, ErrUnsupported)
}

func floatLiteral(f float64, bits int) string {
	switch {
	case math.IsNaN(f):
		return "nan"
	case math.IsInf(f, 1):
		return "inf"
	case math.IsInf(f, -1):
		return "(-inf)"
	}
	return signed(strconv.FormatFloat(f, 'g', -1, bits))
}

// signed parenthesises a negative number so that "x-?" cannot turn into a
// "--" comment.
func signed(s string) string {
	if strings.HasPrefix(s, "-") {
		return "(" + s + ")"
	}
	return s
}
