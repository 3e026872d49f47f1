// Package conformance holds the wire vectors produced by go-livepeer's own
// code (testdata/go-livepeer, testdata/go-livepeer-live, copied from the
// team's shared conformance folder) and the tests that hold our gateway and
// orchestrator to them. go-livepeer's behaviour, not our reading of it,
// decides: a test here fails when our bytes or our verdict differ.
package conformance
