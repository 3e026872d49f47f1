//go:build !chdb

package chembed

const available = false

func openEngine(string) (engine, error) { return nil, ErrNotBuilt }
