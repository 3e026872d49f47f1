package runtime

import (
	"strconv"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics reads the runtime's records at scrape time, so gauges can never
// drift from the state Reserve uses.
type metrics struct {
	rt         *Runtime
	containers *prometheus.Desc
	capacity   *prometheus.Desc
	inUse      *prometheus.Desc
	restarts   *prometheus.Desc
	missed     *prometheus.Desc
	gpuTotal   *prometheus.Desc
	gpuFree    *prometheus.Desc
	gpuUtil    *prometheus.Desc
	load       *prometheus.HistogramVec
}

var allStates = []State{Creating, Loading, Ready, Busy, Draining, Failed, Stopped}

func newMetrics(rt *Runtime) *metrics {
	pm := []string{"pipeline", "model_id"}
	return &metrics{
		rt:         rt,
		containers: prometheus.NewDesc("orchestrator_runner_containers", "Runner containers (and external runners) by state.", []string{"state"}, nil),
		capacity:   prometheus.NewDesc("orchestrator_runner_capacity", "Job slots of serving runners: ready runners × per-runner concurrency.", pm, nil),
		inUse:      prometheus.NewDesc("orchestrator_runner_in_use", "Job slots reserved now.", pm, nil),
		restarts:   prometheus.NewDesc("orchestrator_runner_restarts_total", "Runner containers re-created after a failure.", pm, nil),
		missed:     prometheus.NewDesc("orchestrator_runner_missed_reservations_total", "Jobs refused because no runner slot was free.", pm, nil),
		gpuTotal:   prometheus.NewDesc("orchestrator_gpu_memory_total_bytes", "GPU memory as NVML reports it.", []string{"gpu", "uuid", "name"}, nil),
		gpuFree:    prometheus.NewDesc("orchestrator_gpu_memory_free_bytes", "Free GPU memory as NVML reports it.", []string{"gpu", "uuid", "name"}, nil),
		gpuUtil:    prometheus.NewDesc("orchestrator_gpu_utilization_ratio", "GPU compute utilization (0–1); absent when the GPU does not report it.", []string{"gpu", "uuid", "name"}, nil),
		load: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "orchestrator_runner_load_seconds",
			Help:    "Time from container creation to the runner's first healthy answer.",
			Buckets: []float64{0.5, 1, 2, 5, 10, 30, 60, 120, 180, 300},
		}, []string{"pipeline"}),
	}
}

func (m *metrics) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{m.containers, m.capacity, m.inUse, m.restarts, m.missed, m.gpuTotal, m.gpuFree, m.gpuUtil} {
		ch <- d
	}
	m.load.Describe(ch)
}

func (m *metrics) Collect(ch chan<- prometheus.Metric) {
	rt := m.rt
	rt.mu.Lock()
	byState := map[State]int{}
	for _, md := range rt.order {
		for _, r := range md.records {
			byState[r.state]++
		}
		capa, inUse, _ := rt.capacityLocked(md)
		lv := []string{md.Pipeline.Slug, md.ModelID}
		ch <- prometheus.MustNewConstMetric(m.capacity, prometheus.GaugeValue, float64(capa), lv...)
		ch <- prometheus.MustNewConstMetric(m.inUse, prometheus.GaugeValue, float64(inUse), lv...)
		ch <- prometheus.MustNewConstMetric(m.restarts, prometheus.CounterValue, float64(md.restarts), lv...)
		ch <- prometheus.MustNewConstMetric(m.missed, prometheus.CounterValue, float64(md.missed), lv...)
	}
	rt.mu.Unlock()
	for _, s := range allStates {
		ch <- prometheus.MustNewConstMetric(m.containers, prometheus.GaugeValue, float64(byState[s]), string(s))
	}
	if gpus, err := rt.inv.GPUs(); err == nil {
		for _, g := range gpus {
			lv := []string{strconv.Itoa(g.Index), g.UUID, g.Name}
			ch <- prometheus.MustNewConstMetric(m.gpuTotal, prometheus.GaugeValue, float64(g.MemoryTotal), lv...)
			ch <- prometheus.MustNewConstMetric(m.gpuFree, prometheus.GaugeValue, float64(g.MemoryFree), lv...)
			if g.UtilizationGPU >= 0 {
				ch <- prometheus.MustNewConstMetric(m.gpuUtil, prometheus.GaugeValue, float64(g.UtilizationGPU)/100, lv...)
			}
		}
	}
	m.load.Collect(ch)
}
