// Package metrics is the service's Prometheus metrics: the calls the
// server answers, the decisions the services make and the refusals of the
// trust boundary, counted as they happen; the tenants' policy revisions,
// the replica's following and the decision log's queue and spool, read
// from their owners when scraped; and the Go runtime's. It depends on no
// other package of the service: the app hands it what to read.
package metrics

import (
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"google.golang.org/grpc/codes"
)

// Metrics holds the service's metrics and the registry they are scraped
// from. A nil *Metrics records nothing, so callers need not check.
type Metrics struct {
	Registry *prometheus.Registry

	handled      *prometheus.CounterVec
	seconds      *prometheus.HistogramVec
	decisions    *prometheus.CounterVec
	authFailures *prometheus.CounterVec

	calls sync.Map // callKey → *callMetrics: label lookups done once
	kinds [Kinds][2]prometheus.Counter
}

// Decision kinds, as the decisions metric labels them.
const (
	KindModule = iota
	KindRecord
	KindField
	KindFunction
	// Kinds is how many kinds there are.
	Kinds
)

var kindNames = [Kinds]string{"module", "record", "field", "function"}

// New returns the metrics registered with a registry of their own, with
// the Go runtime's and the process's.
func New() *Metrics {
	m := &Metrics{Registry: prometheus.NewRegistry()}
	m.handled = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "crmauthz_grpc_server_handled_total",
		Help: "gRPC calls answered, by service, method and status code.",
	}, []string{"grpc_service", "grpc_method", "grpc_code"})
	m.seconds = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "crmauthz_grpc_server_handling_seconds",
		Help:    "Time from a call's arrival at the server's interceptors to its answer, by service and method.",
		Buckets: []float64{0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5},
	}, []string{"grpc_service", "grpc_method"})
	m.decisions = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "crmauthz_decisions_total",
		Help: "Decisions made, by kind (module, record, field, function) and result (allow, deny); a CheckPage counts each item.",
	}, []string{"kind", "result"})
	m.authFailures = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "crmauthz_auth_failures_total",
		Help: "Calls refused by authentication (UNAUTHENTICATED) or authorization (PERMISSION_DENIED), by code and reason.",
	}, []string{"grpc_code", "reason"})
	for k := range Kinds {
		m.kinds[k][0] = m.decisions.WithLabelValues(kindNames[k], "deny")
		m.kinds[k][1] = m.decisions.WithLabelValues(kindNames[k], "allow")
	}
	m.Registry.MustRegister(m.handled, m.seconds, m.decisions, m.authFailures,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

type callKey struct {
	method string
	code   codes.Code
}

type callMetrics struct {
	handled prometheus.Counter
	seconds prometheus.Observer
}

// Call counts one answered call of fullMethod (/package.Service/Method)
// with its code and duration.
func (m *Metrics) Call(fullMethod string, code codes.Code, d time.Duration) {
	if m == nil {
		return
	}
	k := callKey{fullMethod, code}
	v, ok := m.calls.Load(k)
	if !ok {
		service, method := splitMethod(fullMethod)
		v, _ = m.calls.LoadOrStore(k, &callMetrics{
			handled: m.handled.WithLabelValues(service, method, code.String()),
			seconds: m.seconds.WithLabelValues(service, method),
		})
	}
	c := v.(*callMetrics)
	c.handled.Inc()
	c.seconds.Observe(d.Seconds())
}

func splitMethod(full string) (service, method string) {
	full = strings.TrimPrefix(full, "/")
	if i := strings.LastIndexByte(full, '/'); i >= 0 {
		return full[:i], full[i+1:]
	}
	return "unknown", full
}

// Refused counts a call the trust boundary refused, with its code and
// the reason of its error.
func (m *Metrics) Refused(code codes.Code, reason string) {
	if m == nil {
		return
	}
	if reason == "" {
		reason = "UNKNOWN"
	}
	m.authFailures.WithLabelValues(code.String(), reason).Inc()
}

// Decision counts one decision of a kind.
func (m *Metrics) Decision(kind int, allowed bool) {
	if m == nil {
		return
	}
	m.kinds[kind][b2i(allowed)].Inc()
}

// Decisions counts a page's decisions: n[kind][0] denied and n[kind][1]
// allowed of each kind.
func (m *Metrics) Decisions(n *[Kinds][2]int) {
	if m == nil {
		return
	}
	for k := range Kinds {
		for r := range 2 {
			if n[k][r] > 0 {
				m.kinds[k][r].Add(float64(n[k][r]))
			}
		}
	}
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

// Sources is what the scrape-time metrics read; a nil function leaves its
// metrics out.
type Sources struct {
	// Revisions returns every loaded tenant's policy revision.
	Revisions func() map[string]int64
	// Replica returns the replica follower's state; ok is false when none
	// runs (the memory store).
	Replica func() (r Replica, ok bool)
	// Log returns the decision log's state.
	Log func() Log
}

// Replica is what the metrics read of the replica follower.
type Replica struct {
	Following     bool
	Lag           time.Duration
	TenantsBehind int
	Reconnects    int64
	Applied       int64
}

// Log is what the metrics read of the decision log.
type Log struct {
	QueueCapacity, Queued                                int
	Recorded, Written, DroppedAllowed, DroppedDenied     int64
	WriteErrors                                          int64
	SpoolEntries, SpoolBytes, SpoolCapacity, SpoolErrors int64
	Degraded                                             bool
}

// Watch registers the metrics read from src when scraped.
func (m *Metrics) Watch(src Sources) {
	m.Registry.MustRegister(&sourceCollector{src: src})
}

var (
	descRevision      = prometheus.NewDesc("crmauthz_tenant_policy_revision", "The policy revision this replica decides a tenant at.", []string{"tenant"}, nil)
	descTenants       = prometheus.NewDesc("crmauthz_tenants_loaded", "Tenants this replica decides for.", nil, nil)
	descFollowing     = prometheus.NewDesc("crmauthz_replica_following", "1 while the replica follows the other replicas' writes, 0 while its listening connection is down.", nil, nil)
	descLag           = prometheus.NewDesc("crmauthz_replica_lag_seconds", "Time since the replica last knew itself current with the database.", nil, nil)
	descBehind        = prometheus.NewDesc("crmauthz_replica_tenants_behind", "Tenants the replica's last comparison found behind the database.", nil, nil)
	descReconnects    = prometheus.NewDesc("crmauthz_replica_reconnects_total", "Listening connections made again after the first.", nil, nil)
	descApplied       = prometheus.NewDesc("crmauthz_replica_applied_total", "Tenants brought up to date from other replicas' writes.", nil, nil)
	descQueued        = prometheus.NewDesc("crmauthz_decision_log_queue_entries", "Decisions waiting in the decision log's in-memory queue.", nil, nil)
	descQueueCap      = prometheus.NewDesc("crmauthz_decision_log_queue_capacity_entries", "The decision log queue's capacity.", nil, nil)
	descRecorded      = prometheus.NewDesc("crmauthz_decision_log_recorded_total", "Decisions handed to the decision log.", nil, nil)
	descWritten       = prometheus.NewDesc("crmauthz_decision_log_written_total", "Decisions the decision log has stored.", nil, nil)
	descDropped       = prometheus.NewDesc("crmauthz_decision_log_dropped_total", "Decisions the overflow policy dropped, by result.", []string{"result"}, nil)
	descWriteErrors   = prometheus.NewDesc("crmauthz_decision_log_write_errors_total", "Failed writes of the decision log (retried).", nil, nil)
	descDegraded      = prometheus.NewDesc("crmauthz_decision_log_degraded", "1 while the decision log's writes fail.", nil, nil)
	descSpoolEntries  = prometheus.NewDesc("crmauthz_decision_spool_entries", "Decisions in the spool not yet shipped to the database.", nil, nil)
	descSpoolBytes    = prometheus.NewDesc("crmauthz_decision_spool_bytes", "Bytes of the spool not yet shipped.", nil, nil)
	descSpoolCapacity = prometheus.NewDesc("crmauthz_decision_spool_capacity_bytes", "The spool's bound.", nil, nil)
	descSpoolErrors   = prometheus.NewDesc("crmauthz_decision_spool_errors_total", "Failed appends to the spool.", nil, nil)
)

type sourceCollector struct{ src Sources }

func (c *sourceCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descRevision, descTenants, descFollowing, descLag, descBehind, descReconnects, descApplied,
		descQueued, descQueueCap, descRecorded, descWritten, descDropped, descWriteErrors, descDegraded,
		descSpoolEntries, descSpoolBytes, descSpoolCapacity, descSpoolErrors} {
		ch <- d
	}
}

func (c *sourceCollector) Collect(ch chan<- prometheus.Metric) {
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	counter := func(d *prometheus.Desc, v int64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
	}
	if c.src.Revisions != nil {
		revs := c.src.Revisions()
		gauge(descTenants, float64(len(revs)))
		for t, r := range revs {
			gauge(descRevision, float64(r), t)
		}
	}
	if c.src.Replica != nil {
		if r, ok := c.src.Replica(); ok {
			gauge(descFollowing, float64(b2i(r.Following)))
			gauge(descLag, r.Lag.Seconds())
			gauge(descBehind, float64(r.TenantsBehind))
			counter(descReconnects, r.Reconnects)
			counter(descApplied, r.Applied)
		}
	}
	if c.src.Log != nil {
		l := c.src.Log()
		gauge(descQueued, float64(l.Queued))
		gauge(descQueueCap, float64(l.QueueCapacity))
		counter(descRecorded, l.Recorded)
		counter(descWritten, l.Written)
		counter(descDropped, l.DroppedAllowed, "allow")
		counter(descDropped, l.DroppedDenied, "deny")
		counter(descWriteErrors, l.WriteErrors)
		gauge(descDegraded, float64(b2i(l.Degraded)))
		gauge(descSpoolEntries, float64(l.SpoolEntries))
		gauge(descSpoolBytes, float64(l.SpoolBytes))
		gauge(descSpoolCapacity, float64(l.SpoolCapacity))
		counter(descSpoolErrors, l.SpoolErrors)
	}
}
