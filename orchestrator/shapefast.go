package orchestrator

import (
	"bytes"
	"encoding/json"
)

// shapeImages is shapeResult's fast path for the answer nearly every image
// job gets, {"images":[{"url":…,"seed":…,"nsfw":…},…]}. Decoding it into
// a generic tree and encoding it again (shapeGeneric) was the largest part
// of the orchestrator's own CPU per job: the decoder scans the data URL
// byte by byte through its state machine, copies it twice and builds a map
// per image, and the encoder sorts and re-escapes it all.
//
// It accepts only a strict subset of JSON whose generic result is certain:
// one top-level key "images" holding an array of objects whose keys are
// "url", "seed" and "nsfw" (each at most once, written without escapes),
// url a string of printable ASCII without escapes, seed a number, nsfw true
// or false, whitespace anywhere JSON allows it and nothing after. For such
// an answer it returns what shapeGeneric returns, byte for byte (keys in
// sorted order, the number as written, strings escaped as encoding/json
// escapes them; FuzzShapeImagesMatchesGeneric checks it), storing the
// media in the same order. Anything else reports ok false, before any
// media is stored, and takes the generic path.
func shapeImages(raw []byte, put func(dataURL []byte) (string, error)) (out []byte, ok bool, err error) {
	// Views of raw, nil when absent: the data URL, most of the answer, is
	// read in place, never copied before it is decoded.
	type image struct {
		url, seed []byte
		nsfw      string // "" when absent
	}
	c := cursor{b: raw}
	if !c.token('{') || !c.key("images") || !c.token('[') {
		return nil, false, nil
	}
	var images []image
	if !c.token(']') {
		for {
			if !c.token('{') {
				return nil, false, nil
			}
			var im image
			if !c.token('}') {
				for {
					c.ws()
					k, ok := c.plainString()
					if !ok || !c.token(':') {
						return nil, false, nil
					}
					c.ws()
					switch string(k) {
					case "url":
						if im.url != nil {
							return nil, false, nil
						}
						v, ok := c.plainString()
						if !ok || len(v) == 0 {
							return nil, false, nil
						}
						im.url = v
					case "seed":
						v, ok := c.number()
						if !ok || im.seed != nil {
							return nil, false, nil
						}
						im.seed = v
					case "nsfw":
						v, ok := c.boolean()
						if !ok || im.nsfw != "" {
							return nil, false, nil
						}
						im.nsfw = v
					default:
						return nil, false, nil
					}
					if c.token('}') {
						break
					}
					if !c.token(',') {
						return nil, false, nil
					}
				}
			}
			images = append(images, im)
			if c.token(']') {
				break
			}
			if !c.token(',') {
				return nil, false, nil
			}
		}
	}
	if !c.token('}') {
		return nil, false, nil
	}
	if c.ws(); c.i != len(c.b) {
		return nil, false, nil
	}
	// The answer is one the fast path knows: from here on its result is
	// the generic path's, errors included.
	out = make([]byte, 0, 64+len(images)*128)
	out = append(out, `{"images":[`...)
	for i, im := range images {
		if i > 0 {
			out = append(out, ',')
		}
		out = append(out, '{')
		sep := ""
		if im.nsfw != "" {
			out = append(out, `"nsfw":`...)
			out = append(out, im.nsfw...)
			sep = ","
		}
		if im.seed != nil {
			out = append(out, sep...)
			out = append(out, `"seed":`...)
			out = append(out, im.seed...)
			sep = ","
		}
		if im.url != nil {
			out = append(out, sep...)
			out = append(out, `"url":`...)
			if put != nil && bytes.HasPrefix(im.url, []byte("data:")) {
				u, err := put(im.url)
				if err != nil {
					return nil, true, err
				}
				out = appendJSONString(out, u)
			} else {
				// Printable ASCII without escapes (plainString), so
				// encoding/json writes it as is unless it holds <, > or &.
				out = appendJSONString(out, string(im.url))
			}
		}
		out = append(out, '}')
	}
	return append(out, "]}"...), true, nil
}

// appendJSONString appends s as encoding/json encodes a string: verbatim
// when every byte is printable ASCII that needs no escape (HTML's <, > and
// & included, which encoding/json escapes), else by encoding/json itself.
func appendJSONString(dst []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		if b := s[i]; b < 0x20 || b > 0x7e || b == '"' || b == '\\' || b == '<' || b == '>' || b == '&' {
			q, _ := json.Marshal(s) // a string always encodes
			return append(dst, q...)
		}
	}
	dst = append(dst, '"')
	dst = append(dst, s...)
	return append(dst, '"')
}

// cursor reads the strict JSON subset shapeImages accepts.
type cursor struct {
	b []byte
	i int
}

func (c *cursor) ws() {
	for c.i < len(c.b) {
		switch c.b[c.i] {
		case ' ', '\t', '\n', '\r':
			c.i++
		default:
			return
		}
	}
}

// token skips whitespace and consumes t if it comes next.
func (c *cursor) token(t byte) bool {
	c.ws()
	if c.i < len(c.b) && c.b[c.i] == t {
		c.i++
		return true
	}
	return false
}

// key consumes "name" and the colon after it.
func (c *cursor) key(name string) bool {
	c.ws()
	s, ok := c.plainString()
	return ok && string(s) == name && c.token(':')
}

// plainString consumes a string of printable ASCII without escapes and
// returns its contents: a view of the answer, valid while it is shaped
// (its buffer is reused after).
func (c *cursor) plainString() ([]byte, bool) {
	if c.i >= len(c.b) || c.b[c.i] != '"' {
		return nil, false
	}
	body := c.b[c.i+1:]
	end := bytes.IndexByte(body, '"')
	if end < 0 {
		return nil, false
	}
	body = body[:end]
	for _, b := range body {
		if b < 0x20 || b > 0x7e || b == '\\' {
			return nil, false
		}
	}
	c.i += end + 2
	return body, true
}

// number consumes a JSON number (RFC 8259 grammar) and returns it as
// written (a view of the answer).
func (c *cursor) number() ([]byte, bool) {
	b, i := c.b, c.i
	digits := func() bool {
		start := i
		for i < len(b) && b[i] >= '0' && b[i] <= '9' {
			i++
		}
		return i > start
	}
	if i < len(b) && b[i] == '-' {
		i++
	}
	switch {
	case i < len(b) && b[i] == '0':
		i++
	case !digits():
		return nil, false
	}
	if i < len(b) && b[i] == '.' {
		i++
		if !digits() {
			return nil, false
		}
	}
	if i < len(b) && (b[i] == 'e' || b[i] == 'E') {
		i++
		if i < len(b) && (b[i] == '+' || b[i] == '-') {
			i++
		}
		if !digits() {
			return nil, false
		}
	}
	s := b[c.i:i]
	c.i = i
	return s, true
}

func (c *cursor) boolean() (string, bool) {
	for _, lit := range [2]string{"true", "false"} {
		if bytes.HasPrefix(c.b[c.i:], []byte(lit)) {
			c.i += len(lit)
			return lit, true
		}
	}
	return "", false
}
