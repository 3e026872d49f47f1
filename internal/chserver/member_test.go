package chserver

import (
	"context"
	"strings"
	"testing"
	"time"
)

// The cluster part of config.xml says what the replicated schema relies on:
// one shard with internal replication, every replica, ZooKeeper, the macros
// the engines name, and the DDL queue ON CLUSTER uses.
func TestMemberConfig(t *testing.T) {
	xml := memberXML(&Member{
		Cluster: "lpgauge", Replicas: []string{"127.0.0.1:9001", "127.0.0.1:9002"}, ZooKeeper: []string{"127.0.0.1:2181"},
		Shard: "01", Replica: "r2", InterserverPort: 9010, SessionTimeout: 5 * time.Second,
	})
	for _, want := range []string{
		"<lpgauge>\n      <shard>\n        <internal_replication>true</internal_replication>",
		"<replica><host>127.0.0.1</host><port>9001</port></replica>",
		"<replica><host>127.0.0.1</host><port>9002</port></replica>",
		`<node index="1"><host>127.0.0.1</host><port>2181</port></node>`,
		"<session_timeout_ms>5000</session_timeout_ms>",
		"<macros><shard>01</shard><replica>r2</replica></macros>",
		"<interserver_http_port>9010</interserver_http_port>",
		"<distributed_ddl><path>/clickhouse/task_queue/ddl</path></distributed_ddl>",
	} {
		if !strings.Contains(xml, want) {
			t.Errorf("member config lacks %q:\n%s", want, xml)
		}
	}
	if !strings.HasSuffix(xml, "</yandex>\n") {
		t.Errorf("member config does not close the <yandex> root")
	}
}

func TestStartRefusesAnIncompleteMember(t *testing.T) {
	for _, m := range []Member{
		{Cluster: "c", ZooKeeper: []string{"127.0.0.1:2181"}, Replica: "r1"},
		{Cluster: "c", Replicas: []string{"127.0.0.1:9000"}, Replica: "r1"},
		{Cluster: "c", Replicas: []string{"127.0.0.1:9000"}, ZooKeeper: []string{"127.0.0.1:2181"}},
		{Cluster: "bad name", Replicas: []string{"127.0.0.1:9000"}, ZooKeeper: []string{"127.0.0.1:2181"}, Replica: "r1"},
		{Cluster: "c", Replicas: []string{"no-port"}, ZooKeeper: []string{"127.0.0.1:2181"}, Replica: "r1"},
	} {
		if _, err := Start(context.Background(), Options{Binary: "/nonexistent", Member: &m}); err == nil || !strings.Contains(err.Error(), "cluster member") {
			t.Errorf("Start(%+v) = %v; want a cluster member error", m, err)
		}
	}
}
