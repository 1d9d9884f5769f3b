// Package audit records what the service decided and what admins changed,
// for auditors: the decision log, queries over it and the change log, and
// the hash chain that makes tampering evident.
package audit

import (
	"context"
	"time"
)

// Decision is one entry of the decision log: one Check, one BatchCheck item,
// one GetFieldAccess or one PlanRecordFilter.
type Decision struct {
	Time       time.Time
	Method     string // "Check", "BatchCheck", "GetFieldAccess", "PlanRecordFilter"
	Caller     string // the caller's identity; the peer address until callers authenticate
	RequestID  string
	Tenant     string
	Subject    string
	Permission string // e.g. "module account read", "function report.export"
	Module     string // the permission's module, when it has one
	RecordID   string // the record, for record checks
	Allowed    bool
	Result     string   // "allow" / "deny", or a filter kind ("all", "none", "conditional")
	Reasons    []string // the explanation, when one was computed
	Revision   int64
	Latency    time.Duration
}

// RequestInfo is what the server knows of the request a decision answers.
type RequestInfo struct {
	ID     string
	Caller string
}

type requestKey struct{}

// WithRequest returns ctx carrying the request's id and caller.
func WithRequest(ctx context.Context, r RequestInfo) context.Context {
	return context.WithValue(ctx, requestKey{}, r)
}

// Request returns the request info of ctx (zero outside a request).
func Request(ctx context.Context) RequestInfo {
	r, _ := ctx.Value(requestKey{}).(RequestInfo)
	return r
}
