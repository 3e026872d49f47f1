//go:build faultinject

package probe

import "os"

// The fault suite (faults/) builds the tester with -tags faultinject and
// switches safeguards off by environment to prove its checks can fail.
func init() {
	ignoreResponseLimits = os.Getenv("LPGAUGE_FAULT_NO_RESPONSE_LIMITS") == "1"
}
