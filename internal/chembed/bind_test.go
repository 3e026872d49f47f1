package chembed

import (
	"math"
	"strings"
	"testing"
	"time"
)

func TestBind(t *testing.T) {
	ts := time.Date(2026, 1, 2, 3, 4, 5, 600e6, time.FixedZone("X", 3600))
	for _, tc := range []struct {
		name  string
		query string
		args  []any
		want  string
		err   string
	}{
		{"no args leaves query alone", "SELECT '?'", nil, "SELECT '?'", ""},
		{"string escaped", "SELECT ?", []any{"a'b\\c\nd\x00e\t"}, `SELECT 'a\'b\\c\nd\0e\t'`, ""},
		{"injection stays a literal", "SELECT count() FROM t WHERE s = ?", []any{"' OR 1=1 --"}, `SELECT count() FROM t WHERE s = '\' OR 1=1 --'`, ""},
		{"numbers and bools", "? ? ? ? ?", []any{uint64(math.MaxUint64), int8(-3), 1.5, true, false}, "18446744073709551615 (-3) 1.5 1 0", ""},
		{"negative cannot form a comment", "x-?", []any{-5}, "x-(-5)", ""},
		{"float specials", "? ? ?", []any{math.NaN(), math.Inf(1), math.Inf(-1)}, "nan inf (-inf)", ""},
		{"time as unix seconds", "?", []any{ts}, "toDateTime(1767319445)", ""},
		{"slices and nil", "? ? ?", []any{[]float64{0.5, 0.9}, []string{"a'"}, nil}, `[0.5, 0.9] ['a\''] NULL`, ""},
		{"named string type", "?", []any{namedString("x'y")}, `'x\'y'`, ""},
		{"nil pointer is NULL", "?", []any{(*int)(nil)}, "NULL", ""},
		{"placeholders in literals, identifiers and comments stay", "SELECT '?', \"?\", `?` -- ?\n, /* ? */ ?", []any{1}, "SELECT '?', \"?\", `?` -- ?\n, /* ? */ 1", ""},
		{"escaped quote inside literal", `SELECT 'it\'s ?', ?`, []any{2}, `SELECT 'it\'s ?', 2`, ""},
		{"escaped placeholder", `SELECT \?, ?`, []any{3}, `SELECT ?, 3`, ""},
		{"too few args", "? ?", []any{1}, "", "more ? placeholders"},
		{"too many args", "?", []any{1, 2}, "", "2 arguments given for 1"},
		{"duration refused", "?", []any{time.Second}, "", "not supported"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := bind(tc.query, tc.args)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("bind error = %v, want one containing %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got != tc.want {
				t.Fatalf("bind = %q, want %q", got, tc.want)
			}
		})
	}
}

type namedString string

func TestTypedLiteral(t *testing.T) {
	utc := time.UTC
	ts := time.Date(2026, 1, 2, 3, 4, 5, 999e6, time.FixedZone("X", -7200))
	for _, tc := range []struct {
		typ  string
		v    any
		want string
		err  string
	}{
		{"UInt64", uint64(7), "7", ""},
		{"UInt64", 7, "", "converting int to UInt64"},
		{"UInt16", uint32(7), "", "converting uint32 to UInt16"},
		{"UInt8", true, "1", ""},
		{"Int32", int32(-4), "(-4)", ""},
		{"Float64", 2.5, "2.5", ""},
		{"Float64", float32(2.5), "", "converting float32"},
		{"String", "a'\\", `'a\'\\'`, ""},
		{"String", namedString("o"), "'o'", ""},
		{"String", 5, "", "converting int to String"},
		{"Enum8('success' = 1, 'failure' = 2)", "failure", "'failure'", ""},
		{"DateTime('UTC')", ts, "'2026-01-02 05:04:05'", ""},
		{"DateTime('UTC')", time.Unix(-1, 0), "", "outside the DateTime range"},
		{"DateTime64(3, 'UTC')", ts, "'2026-01-02 05:04:05.999'", ""},
		{"Date", ts, "'2026-01-02'", ""},
		{"Array(Float64)", []float64{1, math.NaN()}, "[1, nan]", ""},
		{"Nullable(String)", nil, "NULL", ""},
		{"Nullable(String)", ptr("x"), "'x'", ""},
		{"String", nil, "", "NULL into non-Nullable"},
		{"LowCardinality(String)", "lc", "'lc'", ""},
		{"Map(String, String)", map[string]string{}, "", "not supported"},
	} {
		typ, err := parseType(tc.typ, utc)
		if err != nil {
			t.Fatalf("parseType(%q): %v", tc.typ, err)
		}
		got, err := typedLiteral(typ, tc.v)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("typedLiteral(%s, %#v) error = %v, want %q", tc.typ, tc.v, err, tc.err)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("typedLiteral(%s, %#v) = %q, %v; want %q", tc.typ, tc.v, got, err, tc.want)
		}
	}
}

func ptr[T any](v T) *T { return &v }

// TestScanStrict checks the scan rules on a result as chDB returns it
// (JSONCompactEachRowWithNamesAndTypes, DateTime as unix seconds).
func TestScanStrict(t *testing.T) {
	out := `["t", "u", "f", "a", "e", "s", "n", "b"]
["DateTime('UTC')", "UInt64", "Float64", "Array(Float64)", "Enum8('success' = 1)", "LowCardinality(String)", "Nullable(UInt32)", "UInt8"]
["1767323045", "18446744073709551615", "nan", [1.5,"inf"], "success", "a\nb", null, 1]
`
	r, err := parseResult([]byte(out), time.UTC)
	if err != nil {
		t.Fatal(err)
	}
	if !r.Next() {
		t.Fatal("no row")
	}
	var (
		ts time.Time
		u  uint64
		f  float64
		a  []float64
		e  namedString
		s  string
		n  *uint32
		b  bool
	)
	if err := r.Scan(&ts, &u, &f, &a, &e, &s, &n, &b); err != nil {
		t.Fatal(err)
	}
	if !ts.Equal(time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)) || ts.Location() != time.UTC {
		t.Errorf("DateTime = %v", ts)
	}
	if u != math.MaxUint64 || !math.IsNaN(f) || len(a) != 2 || a[0] != 1.5 || !math.IsInf(a[1], 1) || e != "success" || s != "a\nb" || n != nil || !b {
		t.Errorf("scanned %v %v %v %q %q %v %v", u, f, a, e, s, n, b)
	}
	var u32 uint32
	err = r.Scan(&ts, &u32, &f, &a, &e, &s, &n, &b)
	if err == nil || !strings.Contains(err.Error(), "converting UInt64 to *uint32 is unsupported") {
		t.Errorf("UInt64 into *uint32: error = %v, want unsupported", err)
	}
	if err := r.Scan(&ts); err == nil {
		t.Error("Scan with too few destinations succeeded")
	}
	if got := r.ColumnTypes()[6]; !got.Nullable() || got.DatabaseTypeName() != "Nullable(UInt32)" || got.ScanType().String() != "*uint32" {
		t.Errorf("column type = %v %v %v", got.Nullable(), got.DatabaseTypeName(), got.ScanType())
	}
	if r.Next() {
		t.Error("second row")
	}
}
