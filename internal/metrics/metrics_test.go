package metrics

import (
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"google.golang.org/grpc/codes"
)

// TestCountsAndLabels: a call and its refusal, decisions one by one and
// by page, counted under the labels the README names.
func TestCountsAndLabels(t *testing.T) {
	m := New()
	m.Call("/crmauthz.v1.AuthorizationService/Check", codes.OK, time.Millisecond)
	m.Call("/crmauthz.v1.AuthorizationService/Check", codes.OK, time.Millisecond)
	m.Refused(codes.PermissionDenied, "ESCALATION")
	m.Decision(KindRecord, true)
	m.Decisions(&[Kinds][2]int{KindField: {2, 3}})
	want := `
# HELP crmauthz_decisions_total Decisions made, by kind (module, record, field, function) and result (allow, deny); a CheckPage counts each item.
# TYPE crmauthz_decisions_total counter
crmauthz_decisions_total{kind="field",result="allow"} 3
crmauthz_decisions_total{kind="field",result="deny"} 2
crmauthz_decisions_total{kind="function",result="allow"} 0
crmauthz_decisions_total{kind="function",result="deny"} 0
crmauthz_decisions_total{kind="module",result="allow"} 0
crmauthz_decisions_total{kind="module",result="deny"} 0
crmauthz_decisions_total{kind="record",result="allow"} 1
crmauthz_decisions_total{kind="record",result="deny"} 0
# HELP crmauthz_grpc_server_handled_total gRPC calls answered, by service, method and status code.
# TYPE crmauthz_grpc_server_handled_total counter
crmauthz_grpc_server_handled_total{grpc_code="OK",grpc_method="Check",grpc_service="crmauthz.v1.AuthorizationService"} 2
# HELP crmauthz_auth_failures_total Calls refused by authentication (UNAUTHENTICATED) or authorization (PERMISSION_DENIED), by code and reason.
# TYPE crmauthz_auth_failures_total counter
crmauthz_auth_failures_total{grpc_code="PermissionDenied",reason="ESCALATION"} 1
`
	if err := testutil.GatherAndCompare(m.Registry, strings.NewReader(want), "crmauthz_decisions_total",
		"crmauthz_grpc_server_handled_total", "crmauthz_auth_failures_total"); err != nil {
		t.Error(err)
	}
	var none *Metrics // metrics off: every call is a no-op
	none.Call("/x/y", codes.OK, time.Second)
	none.Decision(KindModule, true)
}

// BenchmarkCall is what metrics add to each Check: a call counted and
// timed, and its decision counted.
func BenchmarkCall(b *testing.B) {
	m := New()
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			m.Call("/crmauthz.v1.AuthorizationService/Check", codes.OK, 40*time.Microsecond)
			m.Decision(KindModule, true)
		}
	})
}
