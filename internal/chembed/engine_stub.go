//go:build !chdb

package chembed

const available = false

func openEngine(string) (engine, error) { return nil, ErrNotBuilt }

// Load reports ErrNotBuilt: without the chdb tag there is nothing to load.
func Load() error { return ErrNotBuilt }
