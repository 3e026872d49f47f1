package probe

import (
	"encoding/base64"
	"net/url"
	"strings"
)

// decodeDataURL decodes data:[<mediatype>][;base64],<data>.
func decodeDataURL(raw string) ([]byte, error) {
	meta, data, ok := strings.Cut(strings.TrimPrefix(raw, "data:"), ",")
	if !ok {
		return nil, invalid("media_url", "data URL without a comma")
	}
	if strings.HasSuffix(meta, ";base64") {
		// Strict: non-zero padding bits are not a valid encoding of any image.
		b, err := base64.StdEncoding.Strict().DecodeString(data)
		if err != nil {
			return nil, invalid("media_decode", "data URL base64: %v", err)
		}
		return b, nil
	}
	s, err := url.PathUnescape(data)
	if err != nil {
		return nil, invalid("media_decode", "data URL: %v", err)
	}
	return []byte(s), nil
}
