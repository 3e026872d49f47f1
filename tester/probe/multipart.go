package probe

import (
	"bytes"
	"fmt"
	"mime/multipart"
)

// formFile is one file part of a multipart request.
type formFile struct {
	field, name string
	data        []byte
}

// multipartBody encodes a multipart request as go-livepeer's gateway does
// (ai/worker/multipart.go, e.g. NewImageToImageMultipartWriter:16-93): the
// file part first, written with CreateFormFile (so its Content-Type is
// application/octet-stream and its filename the user's), then the fields in
// the order the caller gives, which must be go-livepeer's order for the
// pipeline, with floats printed as "%f" there.
func multipartBody(file formFile, fields [][2]string) ([]byte, string, error) {
	var b bytes.Buffer
	b.Grow(len(file.data) + 2<<10) // the file and the fields, in one allocation
	mw := multipart.NewWriter(&b)
	w, err := mw.CreateFormFile(file.field, file.name)
	if err != nil {
		return nil, "", fmt.Errorf("multipart file part: %w", err)
	}
	if _, err := w.Write(file.data); err != nil {
		return nil, "", fmt.Errorf("multipart file part: %w", err)
	}
	for _, f := range fields {
		if err := mw.WriteField(f[0], f[1]); err != nil {
			return nil, "", fmt.Errorf("multipart field %s: %w", f[0], err)
		}
	}
	if err := mw.Close(); err != nil {
		return nil, "", fmt.Errorf("multipart close: %w", err)
	}
	return b.Bytes(), mw.FormDataContentType(), nil
}

// goFloat prints a float as go-livepeer's multipart writer does (fmt "%f").
func goFloat(f float64) string { return fmt.Sprintf("%f", f) }
