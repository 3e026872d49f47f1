//go:build race

package runner

// raceEnabled widens timing bounds: the race detector slows the byte loops of
// decoding and muxing several times, and make test runs every package at once.
const raceEnabled = true
