package runner

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"mime"
	"mime/multipart"
	"net/http"
	"strconv"
	"strings"
)

// params reads request fields with FastAPI/pydantic's lax coercion rules and
// collects every schema violation, so one 422 lists them all as FastAPI does.
type params struct {
	json   map[string]json.RawMessage // JSON bodies
	form   map[string][]string        // multipart bodies
	files  map[string][]*multipart.FileHeader
	issues []validationIssue
}

// maxBodyBytes bounds what a runner reads; audio has its own 50 MB check so
// the limit leaves room above it to answer 413 with ai-runner's message.
const maxBodyBytes = 128 << 20

func parseJSON(r *http.Request) (*params, []validationIssue) {
	body, err := io.ReadAll(http.MaxBytesReader(nil, r.Body, maxBodyBytes))
	if err != nil {
		return nil, []validationIssue{{Type: "json_invalid", Loc: []any{"body"}, Msg: "JSON decode error"}}
	}
	var raw any
	if err := json.Unmarshal(body, &raw); err != nil {
		pos := 0
		var se *json.SyntaxError
		if errors.As(err, &se) {
			pos = int(se.Offset)
		}
		return nil, []validationIssue{{Type: "json_invalid", Loc: []any{"body", pos}, Msg: "JSON decode error"}}
	}
	obj := map[string]json.RawMessage{}
	if err := json.Unmarshal(body, &obj); err != nil {
		return nil, []validationIssue{{Type: "model_attributes_type", Loc: []any{"body"},
			Msg: "Input should be a valid dictionary or object to extract fields from", Input: raw}}
	}
	return &params{json: obj}, nil
}

// parseForm reads a multipart body. A body that is not multipart leaves the
// form empty, so every required field is reported missing, as FastAPI does.
func parseForm(r *http.Request) (*params, error) {
	p := &params{form: map[string][]string{}, files: map[string][]*multipart.FileHeader{}}
	ct, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if ct != "multipart/form-data" {
		return p, nil
	}
	r.Body = http.MaxBytesReader(nil, r.Body, maxBodyBytes)
	// Files past 1 MiB go to disk, as ai-runner's FastAPI (starlette's
	// UploadFile spools at 1 MiB): with 32 MiB each upload cost this process
	// up to 64 MiB of buffer, and the CPU runners share the orchestrator's.
	if err := r.ParseMultipartForm(1 << 20); err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return nil, &statusError{http.StatusRequestEntityTooLarge, "File size exceeds limit."}
		}
		return nil, badRequest(fmt.Sprintf("malformed multipart body: %v", err))
	}
	p.form = r.MultipartForm.Value
	p.files = r.MultipartForm.File
	return p, nil
}

func (p *params) issue(typ, field, msg string, input any) {
	p.issues = append(p.issues, validationIssue{Type: typ, Loc: []any{"body", field}, Msg: msg, Input: input})
}

func (p *params) missing(field string) { p.issue("missing", field, "Field required", nil) }

// raw returns the field as JSON (from a JSON body) or as form text.
func (p *params) raw(field string) (js json.RawMessage, text string, ok bool) {
	if p.json != nil {
		v, ok := p.json[field]
		if !ok || string(v) == "null" {
			return nil, "", false
		}
		return v, "", true
	}
	vs, ok := p.form[field]
	if !ok || len(vs) == 0 {
		return nil, "", false
	}
	return nil, vs[0], true
}

func (p *params) str(field, def string, required bool) string {
	js, text, ok := p.raw(field)
	if !ok {
		if required {
			p.missing(field)
		}
		return def
	}
	if js == nil {
		return text
	}
	var s string
	if err := json.Unmarshal(js, &s); err != nil {
		p.issue("string_type", field, "Input should be a valid string", rawValue(js))
		return def
	}
	return s
}

func (p *params) integer(field string, def int) int {
	v, _ := p.optInt(field)
	if v == nil {
		return def
	}
	return *v
}

// optInt returns nil when the field is absent or null (seed: null → random).
func (p *params) optInt(field string) (*int, bool) {
	js, text, ok := p.raw(field)
	if !ok {
		return nil, false
	}
	if js != nil {
		var n json.Number
		dec := json.NewDecoder(bytes.NewReader(js))
		dec.UseNumber()
		if err := dec.Decode(&n); err != nil {
			var s string
			if json.Unmarshal(js, &s) != nil {
				p.issue("int_type", field, "Input should be a valid integer", rawValue(js))
				return nil, true
			}
			text = s
		} else {
			text = n.String()
		}
	}
	t := strings.TrimSpace(text)
	if i, err := strconv.Atoi(t); err == nil {
		return &i, true
	}
	if f, err := strconv.ParseFloat(t, 64); err == nil && js != nil {
		if f == math.Trunc(f) && math.Abs(f) < 1<<53 {
			i := int(f)
			return &i, true
		}
		p.issue("int_from_float", field, "Input should be a valid integer, got a number with a fractional part", f)
		return nil, true
	}
	p.issue("int_parsing", field, "Input should be a valid integer, unable to parse string as an integer", text)
	return nil, true
}

func (p *params) number(field string, def float64) float64 {
	f, text, done := jsonScalar(p, field, def, func(js json.RawMessage) float64 {
		p.issue("float_type", field, "Input should be a valid number", rawValue(js))
		return def
	})
	if done {
		return f
	}
	f, err := strconv.ParseFloat(strings.TrimSpace(text), 64)
	if err != nil || math.IsNaN(f) || math.IsInf(f, 0) {
		p.issue("float_parsing", field, "Input should be a valid number, unable to parse string as a number", text)
		return def
	}
	return f
}

func (p *params) boolean(field string, def bool) bool {
	b, text, done := jsonScalar(p, field, def, func(js json.RawMessage) bool {
		var n float64
		if json.Unmarshal(js, &n) == nil && (n == 0 || n == 1) {
			return n == 1
		}
		p.issue("bool_type", field, "Input should be a valid boolean", rawValue(js))
		return def
	})
	if done {
		return b
	}
	// pydantic's accepted spellings.
	switch strings.ToLower(strings.TrimSpace(text)) {
	case "true", "1", "yes", "on", "t", "y":
		return true
	case "false", "0", "no", "off", "f", "n":
		return false
	}
	p.issue("bool_parsing", field, "Input should be a valid boolean, unable to interpret input", text)
	return def
}

// jsonScalar reads field for number and boolean: def when it is absent, the
// value when the JSON body holds a T, what other makes of any other JSON that
// is not a string (it reports the issue); done is false when text is left to
// parse as pydantic does (a form value, or a JSON string).
func jsonScalar[T any](p *params, field string, def T, other func(json.RawMessage) T) (v T, text string, done bool) {
	js, text, ok := p.raw(field)
	if !ok {
		return def, "", true
	}
	if js == nil {
		return def, text, false
	}
	if json.Unmarshal(js, &v) == nil {
		return v, "", true
	}
	var s string
	if json.Unmarshal(js, &s) != nil {
		return other(js), "", true
	}
	return def, s, false
}

// file reads an uploaded file part; absent → 422 missing.
func (p *params) file(field string) (*multipart.FileHeader, bool) {
	fs := p.files[field]
	if len(fs) == 0 {
		if _, isText := p.form[field]; isText {
			p.issue("value_error", field, "Value error, Expected UploadFile, received: <class 'str'>", nil)
			return nil, false
		}
		p.missing(field)
		return nil, false
	}
	return fs[0], true
}

func readFile(fh *multipart.FileHeader) ([]byte, error) {
	f, err := fh.Open()
	if err != nil {
		return nil, fmt.Errorf("open upload %q: %w", fh.Filename, err)
	}
	defer f.Close()
	b, err := io.ReadAll(f)
	if err != nil {
		return nil, fmt.Errorf("read upload %q: %w", fh.Filename, err)
	}
	return b, nil
}

func rawValue(js json.RawMessage) any {
	var v any
	_ = json.Unmarshal(js, &v)
	return v
}
