package node

import (
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/ekisa-team/syn4pse/node/models"
	"github.com/ekisa-team/syn4pse/node/router"
)

// metrics are the node's Prometheus metrics (GET /metrics; the README lists them). They live on
// a registry of the node's own, not the process-wide default, so that several nodes can run in
// one process (tests do). Counters of requests move as requests pass the servers (observe.go)
// and the router (OnForward); what the catalog, the peer table and the blob server know is read
// from them when scraped, so no code elsewhere has to keep gauges up to date.
type metrics struct {
	registry     *prometheus.Registry
	httpRequests *prometheus.CounterVec
	httpDuration *prometheus.HistogramVec
	grpcRequests *prometheus.CounterVec
	peerRequests *prometheus.CounterVec
	forwarded    *prometheus.CounterVec
}

// requestDurationBuckets span a health check to a long generation stream, in seconds.
var requestDurationBuckets = []float64{0.005, 0.025, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300}

// newMetrics registers the node's metrics; mesh returns the node's mesh, nil while standalone.
func newMetrics(catalog *models.Manager, mesh func() *mesh) *metrics {
	reg := prometheus.NewRegistry()
	m := &metrics{
		registry: reg,
		httpRequests: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "syn4pse_http_requests_total",
			Help: "HTTP API requests by route (the route's pattern, not the path) and status code."}, []string{"route", "code"}),
		httpDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "syn4pse_http_request_duration_seconds",
			Help: "Time from an HTTP API request's arrival to the end of its response (a whole stream), by route.", Buckets: requestDurationBuckets},
			[]string{"route"}),
		grpcRequests: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "syn4pse_grpc_requests_total",
			Help: "gRPC calls served (local clients and peers), by full method and status code."}, []string{"method", "code"}),
		peerRequests: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "syn4pse_peer_rpc_requests_total",
			Help: "gRPC calls served to peers over the mesh, by full method and status code."}, []string{"method", "code"}),
		forwarded: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "syn4pse_forwarded_requests_total",
			Help: "Requests this node forwarded to peers, by outcome (ok, peer_fault, busy, broken, resumed, rejected, canceled, too_large), and local_fallback: requests served here after every peer tried failed."},
			[]string{"outcome"}),
	}
	for _, o := range router.ForwardOutcomes {
		m.forwarded.WithLabelValues(o) // every outcome from zero, so that rates exist before the first
	}
	reg.MustRegister(m.httpRequests, m.httpDuration, m.grpcRequests, m.peerRequests, m.forwarded,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		catalogCollector{catalog},
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "syn4pse_peers", Help: "Peers in the peer table (heard from within p2p.peer_ttl)."},
			func() float64 {
				if ms := mesh(); ms != nil {
					return float64(len(ms.announcer.Table().Peers()))
				}
				return 0
			}),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "syn4pse_peer_blob_bytes_served_total",
			Help: "Model blob bytes sent to peers that pulled models from this node."}, func() float64 {
			if ms := mesh(); ms != nil && ms.blobs != nil {
				return float64(ms.blobs.BytesSent())
			}
			return 0
		}),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "syn4pse_peer_blob_transfers_total",
			Help: "Model blob transfers this node started for peers."}, func() float64 {
			if ms := mesh(); ms != nil && ms.blobs != nil {
				return float64(ms.blobs.Transfers())
			}
			return 0
		}),
	)
	return m
}

// handler serves the registry in Prometheus' text format.
func (m *metrics) handler() http.Handler {
	return promhttp.HandlerFor(m.registry, promhttp.HandlerOpts{Registry: m.registry})
}

// forward counts a forwarding outcome: the router's OnForward.
func (m *metrics) forward(outcome string) { m.forwarded.WithLabelValues(outcome).Inc() }

// httpDone counts and times one HTTP request.
func (m *metrics) httpDone(route string, code int, took time.Duration) {
	m.httpRequests.WithLabelValues(route, strconv.Itoa(code)).Inc()
	m.httpDuration.WithLabelValues(route).Observe(took.Seconds())
}

// The catalog's metrics, per model.
var (
	modelLoadedDesc = prometheus.NewDesc("syn4pse_model_loaded", "1 while the model is loaded, else 0.", []string{"model"}, nil)
	slotsDesc       = prometheus.NewDesc("syn4pse_model_slots", "Parallel sequences (slots) of the loaded model.", []string{"model"}, nil)
	slotsInUseDesc  = prometheus.NewDesc("syn4pse_model_slots_in_use", "Slots of the loaded model that run a request.", []string{"model"}, nil)
	queueDepthDesc  = prometheus.NewDesc("syn4pse_model_queue_depth",
		"Requests admitted for the model that wait: for a free slot, or for the model to load.", []string{"model"}, nil)
	memoryDesc = prometheus.NewDesc("syn4pse_model_memory_bytes",
		"Memory the loaded model takes (weights and KV cache), as the memory budget counts it.", []string{"model"}, nil)
	tokensPerSecondDesc = prometheus.NewDesc("syn4pse_model_tokens_per_second",
		"Generation speed of the loaded model since it loaded, in tokens per second: the figure announced to peers.", []string{"model"}, nil)
	tokensDesc = prometheus.NewDesc("syn4pse_tokens_generated_total",
		"Tokens the model generated on this node, over all its loads.", []string{"model"}, nil)
	promptTokensDesc = prometheus.NewDesc("syn4pse_prompt_tokens_total",
		"Prompt tokens the model evaluated on this node (cached prefixes not counted), over all its loads.", []string{"model"}, nil)
	modelEventsDesc = prometheus.NewDesc("syn4pse_model_events_total",
		"Model lifecycle events by model and event: load, load_failed, unload.", []string{"model", "event"}, nil)
)

// catalogCollector reads the model catalog at scrape time.
type catalogCollector struct{ catalog *models.Manager }

// Describe implements prometheus.Collector.
func (c catalogCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{modelLoadedDesc, slotsDesc, slotsInUseDesc, queueDepthDesc, memoryDesc,
		tokensPerSecondDesc, tokensDesc, promptTokensDesc, modelEventsDesc} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (c catalogCollector) Collect(ch chan<- prometheus.Metric) {
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	counter := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, v, labels...)
	}
	for _, s := range c.catalog.List() {
		loaded := s.State == models.StateLoaded
		gauge(modelLoadedDesc, boolValue(loaded), s.Name)
		inUse, _, queued := slotUse(s)
		gauge(queueDepthDesc, float64(queued), s.Name)
		if loaded {
			gauge(slotsDesc, float64(s.Info.Parallel), s.Name)
			gauge(slotsInUseDesc, float64(inUse), s.Name)
			gauge(memoryDesc, float64(s.MemoryBytes), s.Name)
			gauge(tokensPerSecondDesc, s.Stats.TokensPerSecond(), s.Name)
		}
	}
	for name, t := range c.catalog.Totals() {
		counter(tokensDesc, float64(t.GeneratedTokens), name)
		counter(promptTokensDesc, float64(t.PromptTokens), name)
		counter(modelEventsDesc, float64(t.Loads), name, "load")
		counter(modelEventsDesc, float64(t.LoadFailures), name, "load_failed")
		counter(modelEventsDesc, float64(t.Unloads), name, "unload")
	}
}

func boolValue(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// slotUse splits a model's admitted requests (the catalog's count, which moves before the
// engine's) into the slots they fill and those left free, and the queue beyond: requests that
// wait for a slot, or for the model to load when it is not loaded.
func slotUse(s models.Status) (inUse, free, queued int) {
	if s.State != models.StateLoaded {
		return 0, 0, s.Requests
	}
	inUse = min(s.Requests, s.Info.Parallel)
	return inUse, s.Info.Parallel - inUse, s.Requests - inUse
}
