// Package authzen serves the OpenID AuthZEN Authorization API 1.0 over
// HTTP (--http-addr), for API gateways and services that speak it: the
// Access Evaluation API (/access/v1/evaluation), its batch form
// (/access/v1/evaluations) and the metadata discovery document
// (/.well-known/authzen-configuration). Each evaluation becomes a Check of
// the AuthorizationService, through the same trust boundary (an API key as
// a bearer token, its scopes, tenants and bound user), the same engine and
// the same decision log.
//
// The mapping:
//   - subject: type "user", id the user;
//   - resource: type a module of the catalog (account, lead, ...) and id
//     the record, decided as a record when properties.owner_id is given
//     (properties.department_id with it); type "field" and id
//     "<module>.<field>" for a field; type "function" (or any type) with
//     a function action;
//   - action: name a verb of the catalog (read, update, ...) on a module,
//     read or write on a field, or a function id (report.export); or an
//     action alias of the tenant (SetActionAlias: can_update_account
//     standing for account.update, or for a function), which fixes the
//     module and verb or the function, the resource giving the record;
//   - tenant: the credential's, when it names exactly one; else the
//     tenant_id property of the subject or the resource.
package authzen

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/crmauthz/crmauthz/internal/audit"
	"github.com/crmauthz/crmauthz/internal/auth"
	"github.com/crmauthz/crmauthz/internal/model"
	pb "github.com/crmauthz/crmauthz/proto/crmauthz/v1"
)

// checkMethod is the gRPC method an evaluation is admitted and logged as.
const checkMethod = "/crmauthz.v1.AuthorizationService/Check"

// maxBody bounds a request body; maxEvaluations the evaluations of one
// batch.
const (
	maxBody        = 4 << 20
	maxEvaluations = 1000
)

// Checker decides: the AuthorizationService's Check.
type Checker interface {
	Check(ctx context.Context, req *pb.CheckRequest) (*pb.CheckResponse, error)
}

// Aliases answers what a tenant's action alias stands for: the engine's
// ActionAlias.
type Aliases interface {
	ActionAlias(tenant, name string) (model.Permission, bool, error)
}

// Handler serves the AuthZEN endpoints.
type Handler struct {
	authn   *auth.Authenticator
	check   Checker
	aliases Aliases
	cat     *model.Catalog
	// toStatus maps a handler's error to its gRPC status, as the gRPC
	// server answers it.
	toStatus func(error) *status.Status
}

// New returns the AuthZEN handler deciding with check, admitting callers
// with authn and reading action aliases from aliases; toStatus maps
// errors as the gRPC server does.
func New(authn *auth.Authenticator, check Checker, aliases Aliases, cat *model.Catalog, toStatus func(error) *status.Status) http.Handler {
	h := &Handler{authn: authn, check: check, aliases: aliases, cat: cat, toStatus: toStatus}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /.well-known/authzen-configuration", h.metadata)
	mux.HandleFunc("POST /access/v1/evaluation", h.evaluation)
	mux.HandleFunc("POST /access/v1/evaluations", h.evaluations)
	return mux
}

// Entity is a subject or a resource.
type Entity struct {
	Type       string         `json:"type"`
	ID         string         `json:"id"`
	Properties map[string]any `json:"properties,omitempty"`
}

// Action is what the subject would do.
type Action struct {
	Name       string         `json:"name"`
	Properties map[string]any `json:"properties,omitempty"`
}

// Evaluation is one access evaluation request; in a batch, a field left
// out takes the request's default.
type Evaluation struct {
	Subject  *Entity        `json:"subject,omitempty"`
	Action   *Action        `json:"action,omitempty"`
	Resource *Entity        `json:"resource,omitempty"`
	Context  map[string]any `json:"context,omitempty"`
}

// Batch is an evaluations request.
type Batch struct {
	Evaluation
	Evaluations []Evaluation `json:"evaluations"`
	Options     struct {
		Semantic string `json:"evaluations_semantic"`
	} `json:"options"`
}

// Decision is an evaluation's answer.
type Decision struct {
	Decision bool           `json:"decision"`
	Context  map[string]any `json:"context,omitempty"`
}

func (h *Handler) metadata(w http.ResponseWriter, r *http.Request) {
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	base := scheme + "://" + r.Host
	writeJSON(w, http.StatusOK, map[string]string{
		"policy_decision_point":       base,
		"access_evaluation_endpoint":  base + "/access/v1/evaluation",
		"access_evaluations_endpoint": base + "/access/v1/evaluations",
	})
}

func (h *Handler) evaluation(w http.ResponseWriter, r *http.Request) {
	var e Evaluation
	if !decode(w, r, &e) {
		return
	}
	ctx := h.admit(r)
	d, err := h.decide(ctx, e, "")
	if err != nil {
		h.fail(w, err)
		return
	}
	writeJSON(w, http.StatusOK, d)
}

func (h *Handler) evaluations(w http.ResponseWriter, r *http.Request) {
	var b Batch
	if !decode(w, r, &b) {
		return
	}
	switch b.Options.Semantic {
	case "", "execute_all", "deny_on_first_deny", "permit_on_first_permit":
	default:
		writeError(w, http.StatusBadRequest, "options.evaluations_semantic must be execute_all, deny_on_first_deny or permit_on_first_permit")
		return
	}
	if len(b.Evaluations) > maxEvaluations {
		writeError(w, http.StatusBadRequest, fmt.Sprintf("evaluations: at most %d, got %d", maxEvaluations, len(b.Evaluations)))
		return
	}
	ctx := h.admit(r)
	// Without evaluations the request is one evaluation of its defaults,
	// answered in the batch's shape.
	items := b.Evaluations
	if len(items) == 0 {
		items = []Evaluation{{}}
	}
	out := struct {
		Evaluations []Decision `json:"evaluations"`
	}{Evaluations: make([]Decision, 0, len(items))}
	for i, it := range items {
		e := b.Evaluation
		if it.Subject != nil {
			e.Subject = it.Subject
		}
		if it.Action != nil {
			e.Action = it.Action
		}
		if it.Resource != nil {
			e.Resource = it.Resource
		}
		if it.Context != nil {
			e.Context = it.Context
		}
		d, err := h.decide(ctx, e, fmt.Sprintf("evaluations[%d].", i))
		if err != nil {
			h.fail(w, err)
			return
		}
		out.Evaluations = append(out.Evaluations, d)
		if (b.Options.Semantic == "deny_on_first_deny" && !d.Decision) || (b.Options.Semantic == "permit_on_first_permit" && d.Decision) {
			break
		}
	}
	writeJSON(w, http.StatusOK, out)
}

// admit returns the request's context carrying its credential, as gRPC
// metadata, and its request id and peer for the decision log.
func (h *Handler) admit(r *http.Request) context.Context {
	ctx := r.Context()
	if v := r.Header.Get("Authorization"); v != "" {
		ctx = metadata.NewIncomingContext(ctx, metadata.Pairs("authorization", v))
	}
	id := r.Header.Get("X-Request-Id")
	if id == "" || len(id) > 64 || strings.ContainsAny(id, " \t\r\n") {
		id = fmt.Sprintf("authzen-%d", time.Now().UnixNano())
	}
	var peer net.Addr
	if a, err := net.ResolveTCPAddr("tcp", r.RemoteAddr); err == nil {
		peer = a
	}
	return audit.WithRequest(ctx, audit.RequestInfo{ID: id, Peer: peer})
}

// decide maps one evaluation to a Check and answers it through the trust
// boundary; prefix names the evaluation in errors.
func (h *Handler) decide(ctx context.Context, e Evaluation, prefix string) (Decision, error) {
	if e.Subject == nil || e.Subject.ID == "" {
		return Decision{}, model.Invalid(prefix+"subject.id", model.ReasonMissingField, "is required")
	}
	if e.Subject.Type != "" && e.Subject.Type != "user" {
		return Decision{}, model.Invalid(prefix+"subject.type", model.ReasonInvalidValue, fmt.Sprintf("must be user, got %q", e.Subject.Type))
	}
	if e.Action == nil || e.Action.Name == "" {
		return Decision{}, model.Invalid(prefix+"action.name", model.ReasonMissingField, "is required")
	}
	req := &pb.CheckRequest{SubjectId: e.Subject.ID}
	// A caller who does not authenticate is refused as a Check would be
	// (and recorded as a security event) before the tenant is asked for.
	if p, err := h.authn.Authenticate(ctx); err == nil {
		if req.TenantId, err = tenant(p, e, prefix); err != nil {
			return Decision{}, err
		}
	}
	if v, ok := e.Context["explain"].(bool); ok && v {
		req.Explain = true
	}
	// The action is mapped once the call is admitted for the tenant: a
	// tenant's aliases are not for callers of other tenants to probe.
	resp, err := h.authn.UnaryInterceptor(ctx, req, &grpc.UnaryServerInfo{FullMethod: checkMethod},
		func(ctx context.Context, r any) (any, error) {
			req := r.(*pb.CheckRequest)
			perm, err := h.permission(e, req.GetTenantId(), prefix)
			if err != nil {
				return nil, err
			}
			req.Permission = perm
			return h.check.Check(ctx, req)
		})
	if err != nil {
		return Decision{}, err
	}
	cr := resp.(*pb.CheckResponse)
	d := Decision{Decision: cr.GetAllowed(), Context: map[string]any{"revision": cr.GetRevision()}}
	if id := cr.GetDecisionId(); id != "" {
		d.Context["decision_id"] = id
	}
	if len(cr.GetReasons()) > 0 {
		var why []string
		for _, r := range cr.GetReasons() {
			why = append(why, r.GetMessage())
		}
		d.Context["reasons"] = why
	}
	return d, nil
}

// permission maps an evaluation's action and resource to a permission,
// with the aliases of tenant.
func (h *Handler) permission(e Evaluation, tenant, prefix string) (*pb.Permission, error) {
	name := e.Action.Name
	if h.cat.HasFunction(name) {
		return functionPermission(name), nil
	}
	if !h.cat.HasVerb(name) {
		p, ok, err := h.aliases.ActionAlias(tenant, name)
		switch {
		case errors.Is(err, model.ErrTenantNotFound):
			// Check answers for the tenant.
		case err != nil:
			return nil, err
		case ok && p.Kind == model.KindFunction:
			return functionPermission(p.Function), nil
		case ok:
			return aliasedModule(e, p, name, prefix)
		}
	}
	if e.Resource == nil || e.Resource.Type == "" {
		return nil, model.Invalid(prefix+"resource.type", model.ReasonMissingField, "is required unless action.name is a function or one of the tenant's action aliases")
	}
	res := e.Resource
	if res.Type == "field" {
		module, field, ok := strings.Cut(res.ID, ".")
		if !ok {
			return nil, model.Invalid(prefix+"resource.id", model.ReasonInvalidValue, "a field is <module>.<field>")
		}
		mode := pb.FieldAccessMode_FIELD_ACCESS_MODE_READ
		switch name {
		case "read":
		case "write":
			mode = pb.FieldAccessMode_FIELD_ACCESS_MODE_WRITE
		default:
			return nil, model.Invalid(prefix+"action.name", model.ReasonInvalidValue, "a field's action is read or write")
		}
		return &pb.Permission{Kind: &pb.Permission_Field{Field: &pb.FieldPermission{Module: module, Field: field, Access: mode}}}, nil
	}
	return modulePermission(res, res.Type, name), nil
}

// aliasedModule is the module verb p an alias named: the resource, if
// any, gives the record, and may name the module only as p does.
func aliasedModule(e Evaluation, p model.Permission, alias, prefix string) (*pb.Permission, error) {
	res := e.Resource
	if res == nil {
		res = &Entity{}
	}
	if res.Type != "" && res.Type != p.Module {
		return nil, model.Invalid(prefix+"resource.type", model.ReasonInvalidValue,
			fmt.Sprintf("the action %q stands for %s.%s, so the resource is a %s (or leaves its type out), not %q", alias, p.Module, p.Verb, p.Module, res.Type))
	}
	return modulePermission(res, p.Module, p.Verb), nil
}

// modulePermission is verb on module, on the resource's record when its
// properties name an owner.
func modulePermission(res *Entity, module, verb string) *pb.Permission {
	mp := &pb.ModulePermission{Module: module, Verb: verb}
	if owner, _ := res.Properties["owner_id"].(string); owner != "" {
		dept, _ := res.Properties["department_id"].(string)
		mp.Record = &pb.Record{Id: res.ID, OwnerId: owner, DepartmentId: dept}
	}
	return &pb.Permission{Kind: &pb.Permission_Module{Module: mp}}
}

func functionPermission(fn string) *pb.Permission {
	return &pb.Permission{Kind: &pb.Permission_Function{Function: &pb.FunctionPermission{Function: fn}}}
}

// tenant is the credential's one tenant, else the subject's or the
// resource's tenant_id property.
func tenant(p *auth.Principal, e Evaluation, prefix string) (string, error) {
	for _, ent := range []*Entity{e.Subject, e.Resource} {
		if ent == nil {
			continue
		}
		if t, _ := ent.Properties["tenant_id"].(string); t != "" {
			return t, nil
		}
	}
	if len(p.Tenants) == 1 {
		return p.Tenants[0], nil
	}
	return "", model.Invalid(prefix+"subject.properties.tenant_id", model.ReasonMissingField,
		"is required: the credential names more than one tenant (or none), so the subject or the resource must name it")
}

// fail answers an error with the HTTP status of its gRPC code and a JSON
// body naming it.
func (h *Handler) fail(w http.ResponseWriter, err error) {
	st := h.toStatus(err)
	code := http.StatusInternalServerError
	switch st.Code() {
	case codes.InvalidArgument:
		code = http.StatusBadRequest
	case codes.Unauthenticated:
		code = http.StatusUnauthorized
	case codes.PermissionDenied:
		code = http.StatusForbidden
	case codes.NotFound:
		code = http.StatusNotFound
	case codes.Unavailable:
		code = http.StatusServiceUnavailable
	case codes.DeadlineExceeded, codes.Canceled:
		code = http.StatusGatewayTimeout
	}
	body := map[string]any{"error": st.Message(), "code": st.Code().String()}
	for _, d := range st.Details() {
		if info, ok := d.(*errdetails.ErrorInfo); ok {
			body["reason"] = info.GetReason()
			if f := info.GetMetadata()["field"]; f != "" {
				body["field"] = f
			}
		}
	}
	if code == http.StatusUnauthorized {
		w.Header().Set("WWW-Authenticate", `Bearer realm="crmauthz"`)
	}
	writeJSON(w, code, body)
}

func decode(w http.ResponseWriter, r *http.Request, v any) bool {
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxBody))
	if err := dec.Decode(v); err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			writeError(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("the body is larger than %d bytes", maxBody))
			return false
		}
		writeError(w, http.StatusBadRequest, "the body is not the JSON of an AuthZEN request: "+err.Error())
		return false
	}
	return true
}

func writeError(w http.ResponseWriter, code int, msg string) {
	writeJSON(w, code, map[string]string{"error": msg, "code": codes.InvalidArgument.String()})
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}
