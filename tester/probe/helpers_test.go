package probe

import (
	"time"

	"github.com/lpgauge/lpgauge/media/wav"
)

func sleepMS(n int) { time.Sleep(time.Duration(n) * time.Millisecond) }

// speechWAV is a WAV of seconds for the fakes' text-to-speech answers.
func speechWAV(seconds float64, seed int64) []byte { return wav.Voice(seconds, 16000, uint64(seed)) }
