package probe

import (
	"bytes"
	"fmt"
	"mime/multipart"
)

// formFile is one file part of a multipart request.
type formFile struct {
	field, name, contentType string
	data                     []byte
}

// multipartBody encodes fields (in sorted-by-caller order) and files the way
// the orchestrator's multipart endpoints read them.
func multipartBody(fields [][2]string, files ...formFile) ([]byte, string, error) {
	var b bytes.Buffer
	mw := multipart.NewWriter(&b)
	for _, f := range fields {
		if err := mw.WriteField(f[0], f[1]); err != nil {
			return nil, "", err
		}
	}
	for _, f := range files {
		h := make(map[string][]string)
		h["Content-Disposition"] = []string{fmt.Sprintf(`form-data; name=%q; filename=%q`, f.field, f.name)}
		h["Content-Type"] = []string{f.contentType}
		w, err := mw.CreatePart(h)
		if err != nil {
			return nil, "", err
		}
		if _, err := w.Write(f.data); err != nil {
			return nil, "", err
		}
	}
	if err := mw.Close(); err != nil {
		return nil, "", err
	}
	return b.Bytes(), mw.FormDataContentType(), nil
}

func pick[T any](xs []T, seed int64) T { return xs[uint64(seed)%uint64(len(xs))] }
