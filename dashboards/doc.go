// Package dashboards holds the Grafana dashboards (json/), their provisioning
// (provisioning/) and the Prometheus metric contract (metrics.txt). It has no
// code of its own: its tests parse every dashboard and run every ClickHouse
// panel query against a real ClickHouse 18.16 server, because Grafana cannot
// be installed where the tests run.
package dashboards
