// Package faults is the fault suite of the issue "Prove it": the real tester,
// orchestrator and runner binaries against a real ClickHouse server, the real
// Docker engine and a zoo of hostile orchestrators, each scenario asserting
// the promise it tests (no result lost, none counted twice, memory bounded,
// every failure classified, the service back without a hand restart), and
// each with a companion that breaks the safeguard on purpose and shows the
// check catches it. It holds tests only; see README.md.
package faults
