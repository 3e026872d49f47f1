package wav

import (
	"errors"
	"testing"
)

// A tone reads back at its length, whole or cut (a streamed upload whose
// header promises more than arrived counts what arrived), and anything that
// is not a PCM WAV is refused as ErrFormat, which the runner answers 415.
func TestToneDuration(t *testing.T) {
	b := Tone(2.5, 16000, 440)
	if d, err := Duration(b, int64(len(b))); err != nil || d != 2.5 {
		t.Fatalf("Duration(Tone(2.5 s)) = %v, %v", d, err)
	}
	if d, err := Duration(b[:44+16000], 44+16000); err != nil || d != 0.5 {
		t.Errorf("cut to 0.5 s: %v, %v", d, err)
	}
	if d, err := Duration(b[:64], int64(len(b))); err != nil || d != 2.5 {
		t.Errorf("head of a 2.5 s file: %v, %v", d, err)
	}
	for _, bad := range [][]byte{nil, []byte("RIFF\x00\x00\x00\x00WAVE"), []byte("ID3\x03 not a wav at all")} {
		if _, err := Duration(bad, int64(len(bad))); !errors.Is(err, ErrFormat) {
			t.Errorf("Duration(%q) = %v, want ErrFormat", bad, err)
		}
	}
}
