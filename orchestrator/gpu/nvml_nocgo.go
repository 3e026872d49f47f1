//go:build !cgo

package gpu

// OpenSystem without cgo cannot load NVML (go-nvml is a cgo package), so the
// binary runs CPU runners and says why.
func OpenSystem() (Inventory, error) {
	return CPU{Reason: "built without cgo, NVML unavailable; runners start without GPUs"}, nil
}
