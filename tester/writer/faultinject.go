//go:build faultinject

package writer

import "os"

// The fault suite (faults/) builds the tester with -tags faultinject and
// switches safeguards off by environment to prove its checks can fail.
func init() {
	faults.noSpool = os.Getenv("LPGAUGE_FAULT_NO_SPOOL") == "1"
}
