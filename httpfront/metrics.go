package httpfront

import (
	"context"
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/hopper-dev/hopper/batch"
)

// probeTimeout bounds the target probe made at each scrape.
const probeTimeout = 2 * time.Second

// metrics is the front's Prometheus registry (its own, not the global
// one). Counts of jobs are the spool's Stats at scrape time; durations are observed from records as they land in done/ and
// failed/, so they cover every job finished while this front runs,
// whoever ran it.
type metrics struct {
	s        *Server
	reg      *prometheus.Registry
	duration *prometheus.HistogramVec
	wait     prometheus.Histogram
	finished *prometheus.CounterVec
	loads    *prometheus.CounterVec

	jobs, depth, oldest, targetUp, paused, waiters, batches *prometheus.Desc
	// Per target, as the running serve publishes it (.hopper/targets.json).
	laneUp, laneSlots, laneInUse, laneDone, laneFailed, laneLoads, laneLoadSeconds, laneResident *prometheus.Desc
	// The cluster, as the running serve publishes it (.hopper/cluster.json).
	clusterQuorum, clusterNodeUp, clusterQueued *prometheus.Desc
}

// clusterFresh is how old the published cluster status may be: serve
// rewrites it every 2 seconds.
const clusterFresh = 10 * time.Second

// jobBuckets span a fast embedding to a long generation, in seconds.
var jobBuckets = []float64{0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600}

func newMetrics(s *Server) *metrics {
	m := &metrics{
		s:   s,
		reg: prometheus.NewRegistry(),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "hopper_job_duration_seconds",
			Help:    "Time from a job's last start to its end, by how it ended (done or failed).",
			Buckets: jobBuckets,
		}, []string{"state"}),
		wait: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "hopper_job_queue_wait_seconds",
			Help:    "Time a job waited between being queued and first starting.",
			Buckets: jobBuckets,
		}),
		finished: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "hopper_jobs_finished_total",
			Help: "Jobs that landed in done/ or failed/, by state and error kind.",
		}, []string{"state", "error_kind"}),
		loads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "hopper_model_loads_total",
			Help: "Finished jobs that paid for loading their model, by model.",
		}, []string{"model"}),
		jobs: prometheus.NewDesc("hopper_jobs",
			"Jobs in the spool by state directory (queued new/, running cur/, deferred, held, done, failed), counted at scrape time.",
			[]string{"state"}, nil),
		depth: prometheus.NewDesc("hopper_queue_depth",
			"Queued jobs by model (fn:NAME for a function without one) and priority, from the front's catalog of the spool.",
			[]string{"model", "priority"}, nil),
		oldest: prometheus.NewDesc("hopper_oldest_queued_job_age_seconds",
			"Age of the oldest job in new/ (0 when none waits).", nil, nil),
		targetUp: prometheus.NewDesc("hopper_target_up",
			"Whether the Ollama target answered GET /api/version at scrape time.", nil, nil),
		paused: prometheus.NewDesc("hopper_paused",
			"Whether the spool is paused (the PAUSED file exists).", nil, nil),
		waiters: prometheus.NewDesc("hopper_http_waiters",
			"HTTP requests waiting on jobs: long-polls, output streams and drop-in requests.", nil, nil),
		batches: prometheus.NewDesc("hopper_batches",
			"Batches by state (validating, in_progress, finalizing, completed, failed, cancelling, cancelled), counted at scrape time.",
			[]string{"state"}, nil),
	}
	lane := func(name, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc(name, help+" From the running serve, per target.", append([]string{"target"}, labels...), nil)
	}
	m.laneUp = lane("hopper_lane_up", "Whether the target answers (1) or its lane is stopped until it does (0).")
	m.laneSlots = lane("hopper_lane_slots", "Requests the lane may have in flight at once (parallel).")
	m.laneInUse = lane("hopper_lane_slots_in_use", "Requests in flight on the lane now.")
	m.laneDone = lane("hopper_lane_jobs_done_total", "Jobs the lane finished done since serve started.")
	m.laneFailed = lane("hopper_lane_jobs_failed_total", "Jobs the lane finished failed since serve started.")
	m.laneLoads = lane("hopper_lane_model_loads_total", "Model loads the lane caused since serve started.")
	m.laneLoadSeconds = lane("hopper_lane_load_seconds_total", "Time spent loading models on the target since serve started.")
	m.laneResident = lane("hopper_lane_resident_model", "1 for each model loaded on the target.", "model")
	m.clusterQuorum = prometheus.NewDesc("hopper_cluster_quorum",
		"Whether this host's cluster has quorum (1) or hands on nothing until it does (0); absent without a cluster.",
		[]string{"cluster", "node"}, nil)
	m.clusterNodeUp = prometheus.NewDesc("hopper_cluster_node_up",
		"Whether each host of the cluster is up with the queue's leader (1 for the leader itself), as this host sees it.",
		[]string{"node", "leader"}, nil)
	m.clusterQueued = prometheus.NewDesc("hopper_cluster_queued",
		"Jobs waiting in the cluster's queue by load key and priority.",
		[]string{"key", "priority"}, nil)
	m.reg.MustRegister(m.duration, m.wait, m.finished, m.loads, m,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

func (m *metrics) handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{ErrorLog: nil, Registry: m.reg})
}

// Describe and Collect make metrics the collector of the scrape-time
// values.
func (m *metrics) Describe(ch chan<- *prometheus.Desc) {
	ch <- m.jobs
	ch <- m.depth
	ch <- m.oldest
	ch <- m.targetUp
	ch <- m.paused
	ch <- m.waiters
	ch <- m.batches
	for _, d := range []*prometheus.Desc{m.laneUp, m.laneSlots, m.laneInUse, m.laneDone, m.laneFailed, m.laneLoads, m.laneLoadSeconds, m.laneResident,
		m.clusterQuorum, m.clusterNodeUp, m.clusterQueued} {
		ch <- d
	}
}

// collectLanes exports each target as the running serve last published
// it; nothing when no serve runs.
func (m *metrics) collectLanes(ch chan<- prometheus.Metric) {
	sp := m.s.sp
	pub, err := sp.ReadTargets()
	if err != nil || !sp.Served() {
		return
	}
	for _, t := range pub.Targets {
		g := func(d *prometheus.Desc, kind prometheus.ValueType, v float64, labels ...string) {
			ch <- prometheus.MustNewConstMetric(d, kind, v, append([]string{t.Name}, labels...)...)
		}
		g(m.laneUp, prometheus.GaugeValue, boolValue(t.Up))
		g(m.laneSlots, prometheus.GaugeValue, float64(t.Slots))
		g(m.laneInUse, prometheus.GaugeValue, float64(t.InFlight))
		g(m.laneDone, prometheus.CounterValue, float64(t.Done))
		g(m.laneFailed, prometheus.CounterValue, float64(t.Failed))
		g(m.laneLoads, prometheus.CounterValue, float64(t.Loads))
		g(m.laneLoadSeconds, prometheus.CounterValue, t.LoadSeconds)
		for _, model := range t.Resident {
			g(m.laneResident, prometheus.GaugeValue, 1, model)
		}
	}
}

// collectCluster exports the cluster as the running serve last published
// it; nothing without a cluster.
func (m *metrics) collectCluster(ch chan<- prometheus.Metric) {
	c := m.s.sp.ReadCluster(clusterFresh)
	if c == nil {
		return
	}
	ch <- prometheus.MustNewConstMetric(m.clusterQuorum, prometheus.GaugeValue, boolValue(c.Quorum), c.Name, c.Node)
	for _, p := range c.Peers {
		ch <- prometheus.MustNewConstMetric(m.clusterNodeUp, prometheus.GaugeValue, boolValue(p.Up), p.Name, strconv.FormatBool(p.Leader))
	}
	for _, d := range c.Depth {
		ch <- prometheus.MustNewConstMetric(m.clusterQueued, prometheus.GaugeValue, float64(d.Count), d.Key, strconv.Itoa(d.Priority))
	}
}

func (m *metrics) Collect(ch chan<- prometheus.Metric) {
	s := m.s
	now := s.cfg.Now()
	st, err := s.sp.Stats()
	if err == nil {
		for _, c := range []struct {
			state string
			n     int
		}{{"queued", st.Queued}, {"running", st.Running}, {"deferred", st.Deferred},
			{"held", st.Held}, {"done", st.Done}, {"failed", st.Failed}} {
			ch <- prometheus.MustNewConstMetric(m.jobs, prometheus.GaugeValue, float64(c.n), c.state)
		}
	}
	age := 0.0
	if !st.OldestQueued.IsZero() {
		age = max(now.Sub(st.OldestQueued).Seconds(), 0)
	}
	ch <- prometheus.MustNewConstMetric(m.oldest, prometheus.GaugeValue, age)
	select {
	case <-s.catalog.Ready():
		for model, byPrio := range s.catalog.Counts().Queued {
			for prio, n := range byPrio {
				ch <- prometheus.MustNewConstMetric(m.depth, prometheus.GaugeValue, float64(n), model, strconv.Itoa(prio))
			}
		}
	default: // still reading the spool: no depth rather than a wrong one
	}
	ch <- prometheus.MustNewConstMetric(m.targetUp, prometheus.GaugeValue, boolValue(s.probeTarget()))
	ch <- prometheus.MustNewConstMetric(m.paused, prometheus.GaugeValue, boolValue(st.Paused))
	ch <- prometheus.MustNewConstMetric(m.waiters, prometheus.GaugeValue, float64(len(s.waiters)))
	counts := map[batch.State]int{}
	for _, st := range []batch.State{batch.Validating, batch.InProgress, batch.Finalizing,
		batch.Completed, batch.Failed, batch.Cancelling, batch.Cancelled} {
		counts[st] = 0
	}
	if list, _ := s.batches.List(); list != nil {
		for _, b := range list {
			counts[b.State]++
		}
	}
	for st, n := range counts {
		ch <- prometheus.MustNewConstMetric(m.batches, prometheus.GaugeValue, float64(n), string(st))
	}
	m.collectLanes(ch)
	m.collectCluster(ch)
}

func boolValue(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// probeTarget reports whether the target answers GET /api/version.
func (s *Server) probeTarget() bool {
	ctx, cancel := context.WithTimeout(context.Background(), probeTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.target.String()+"/api/version", nil)
	if err != nil {
		return false
	}
	resp, err := s.cfg.HTTPClient.Do(req)
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

// landed observes a record that arrived in done/ or failed/.
func (s *Server) landed(id string) {
	rec, err := s.sp.Finished(id)
	if rec == nil || err != nil {
		return // moved on already, or not a record
	}
	m := s.metrics
	state := string(rec.State)
	kind := ""
	if rec.Error != nil {
		kind = string(rec.Error.Kind)
	}
	m.finished.WithLabelValues(state, kind).Inc()
	if rec.StartedAt != nil && rec.FinishedAt != nil {
		m.duration.WithLabelValues(state).Observe(max(rec.FinishedAt.Sub(*rec.StartedAt).Seconds(), 0))
	}
	first := rec.StartedAt
	if len(rec.History) > 0 && rec.History[0].StartedAt != nil {
		first = rec.History[0].StartedAt
	}
	if first != nil && !rec.SubmittedAt.IsZero() {
		m.wait.Observe(max(first.Sub(rec.SubmittedAt).Seconds(), 0))
	}
	// A model the target does not have was never loaded, whatever the
	// runner guessed before asking.
	if rec.ModelLoaded && rec.Model != "" && !(rec.Error != nil && rec.Error.Status == http.StatusNotFound) {
		m.loads.WithLabelValues(rec.Model).Inc()
	}
	if s.cfg.hooks.onLanded != nil {
		s.cfg.hooks.onLanded(id)
	}
}

var _ prometheus.Collector = (*metrics)(nil)
