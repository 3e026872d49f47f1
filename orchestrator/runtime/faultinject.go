//go:build faultinject

package runtime

import "os"

// The fault suite (faults/) builds the orchestrator with -tags faultinject
// and switches safeguards off by environment to prove its checks can fail.
func init() {
	faults.noEngineRetry = os.Getenv("LPGAUGE_FAULT_NO_ENGINE_RETRY") == "1"
	faults.noReplace = os.Getenv("LPGAUGE_FAULT_NO_RUNNER_REPLACEMENT") == "1"
}
