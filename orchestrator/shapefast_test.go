package orchestrator

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/lpgauge/lpgauge/capability"
)

// FuzzShapeImagesMatchesGeneric checks the fast path against the generic
// one: whenever shapeImages takes an answer, its bytes, its error and the
// media it stores (in order) are exactly shapeGeneric's, in URL mode and in
// inline mode.
func FuzzShapeImagesMatchesGeneric(f *testing.F) {
	img := dataURL("image/png", pngOf(4, 3))
	for _, s := range []string{
		`{"images":[{"url":"` + img + `","seed":42,"nsfw":false}]}`,
		`{"images": [{"url": "` + img + `", "seed": 1234567890123456789012, "nsfw": true}, {"seed":-0.5e+3,"url":"` + img + `"}]}` + "\n",
		`{"images":[]}`, `{"images":[{}]}`, ` {"images":[{"nsfw":false}]} `,
		`{"images":[{"url":"https://x.test/a?b=1&c=<2>"}]}`,
		`{"images":[{"url":"data:image/png;base64,!!"}]}`,
		`{"images":[{"url":"data:,plain","seed":1}]}`,
		`{"images":[{"url":"data:image/png;base64,AAAA","url":"data:image/png;base64,AAAA"}]}`,
		`{"images":[{"URL":"x"}]}`, `{"images":[{"url":"\u0041"}]}`, `{"images":[{"url":"é"}]}`,
		`{"images":[{"seed":01}]}`, `{"images":[{"seed":1.}]}`, `{"images":[{"nsfw":truex}]}`,
		`{"images":[{"seed":1}]} x`, `{"images":[{"seed":1}],}`, `{"images":[{"seed":1},]}`, `{"images":[{"seed":1}]`,
		`{"images":[{"nsfw":null}]}`, `{"images":null}`, `{"images":[[]]}`, `[]`, ``, `{`,
	} {
		f.Add(true, s)
		f.Add(false, s)
	}
	p := mustPipe(capability.TextToImage)
	f.Fuzz(func(t *testing.T, urlMode bool, raw string) {
		var fastLog, genLog []string
		putter := func(log *[]string) func([]byte) (string, error) {
			if !urlMode {
				return nil
			}
			return func(u []byte) (string, error) {
				mime, data, err := parseDataURL(u)
				if err != nil {
					return "", err
				}
				if len(data) > 64 {
					return "", errors.New("store full")
				}
				*log = append(*log, fmt.Sprintf("%s %x", mime, data))
				return fmt.Sprintf("https://o.test/stream/id/%d.png", len(*log)-1), nil
			}
		}
		out, ok, err := shapeImages([]byte(raw), putter(&fastLog))
		if !ok {
			if len(fastLog) != 0 {
				t.Fatalf("%q: declined after storing %d media", raw, len(fastLog))
			}
			return
		}
		want, wantErr := shapeGeneric(p, aiRequest{}, []byte(raw), putter(&genLog))
		if (err == nil) != (wantErr == nil) || err != nil && err.Error() != wantErr.Error() {
			t.Fatalf("%q: fast error %v, generic %v", raw, err, wantErr)
		}
		if !bytes.Equal(out, want) {
			t.Fatalf("%q:\nfast    %s\ngeneric %s", raw, out, want)
		}
		if strings.Join(fastLog, "|") != strings.Join(genLog, "|") {
			t.Fatalf("%q: stored %v, generic %v", raw, fastLog, genLog)
		}
	})
}

// TestShapeImagesTakesRunnerAnswers makes sure the fast path is the one
// taken for what runners really send: the CPU runner's compact answer and
// ai-runner's (Python json, spaces after separators).
func TestShapeImagesTakesRunnerAnswers(t *testing.T) {
	img := dataURL("image/png", pngOf(4, 3))
	for _, raw := range []string{
		`{"images":[{"url":"` + img + `","seed":42,"nsfw":false}]}`,
		`{"images": [{"url": "` + img + `", "seed": 42, "nsfw": false}, {"url": "` + img + `", "seed": 43, "nsfw": false}]}`,
	} {
		if _, ok, err := shapeImages([]byte(raw), func([]byte) (string, error) { return "u", nil }); !ok || err != nil {
			t.Errorf("%.60q: fast path not taken (ok %v, err %v)", raw, ok, err)
		}
	}
}
