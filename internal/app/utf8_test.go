package app_test

import (
	"bytes"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/mem"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/crmauthz/crmauthz/internal/config"
	pb "github.com/crmauthz/crmauthz/proto/crmauthz/v1"
)

// rawCodec sends a request's bytes as they are: protobuf-go refuses to
// encode a string that is not UTF-8, a hostile client need not.
type rawCodec struct{}

func (rawCodec) Marshal(v any) (mem.BufferSlice, error) {
	return mem.BufferSlice{mem.SliceBuffer(*v.(*[]byte))}, nil
}

func (rawCodec) Unmarshal(data mem.BufferSlice, v any) error {
	*v.(*[]byte) = data.Materialize()
	return nil
}

func (rawCodec) Name() string { return "proto" }

// TestInvalidUTF8 sends requests whose strings are not UTF-8. The Check
// family's messages are decoded by generated code that does not look at
// the bytes of a string (the server's codec), so their handlers must
// refuse them, INVALID_ARGUMENT naming the field; other requests are
// refused by protobuf-go's decoder.
func TestInvalidUTF8(t *testing.T) {
	cfg := config.Default()
	cfg.InsecureNoAuth = true
	e := start(t, cfg)
	// spoil encodes m and replaces the first byte of the string s in it
	// with 0xff, which is never UTF-8.
	spoil := func(m proto.Message, s string) []byte {
		data, err := proto.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		i := bytes.Index(data, []byte(s))
		if i < 0 {
			t.Fatalf("%q not in the encoding of %T", s, m)
		}
		data[i] = 0xff
		return data
	}
	const authz = "/crmauthz.v1.AuthorizationService/"
	check := func(tenant, subject string, p *pb.Permission) *pb.CheckRequest {
		return &pb.CheckRequest{TenantId: tenant, SubjectId: subject, Permission: p}
	}
	page := &pb.CheckPageRequest{TenantId: "demo", SubjectId: "bob", RecordPermission: modulePerm("account", "read"),
		Records: []*pb.Record{{Id: "acct-1", OwnerId: "bob"}, {Id: "acct-2", OwnerId: "carol"}}}
	batch := &pb.BatchCheckRequest{Items: []*pb.BatchCheckItem{
		{TenantId: "demo", SubjectId: "bob", Permission: modulePerm("account", "read")},
		{TenantId: "demo", SubjectId: "mallory", Permission: modulePerm("account", "read")},
	}}
	for _, tt := range []struct {
		name, method string
		req          []byte
		code         codes.Code
		field        string
	}{
		{"check tenant", "Check", spoil(check("demo", "bob", modulePerm("account", "read")), "demo"), codes.InvalidArgument, "tenant_id"},
		{"check subject", "Check", spoil(check("demo", "bob", modulePerm("account", "read")), "bob"), codes.InvalidArgument, "subject_id"},
		{"check module", "Check", spoil(check("demo", "bob", modulePerm("account", "read")), "account"), codes.InvalidArgument, "permission.module.module"},
		{"check verb", "Check", spoil(check("demo", "bob", modulePerm("account", "read")), "read"), codes.InvalidArgument, "permission.module.verb"},
		{"page record id", "CheckPage", spoil(page, "acct-2"), codes.InvalidArgument, "records[1].id"},
		{"page record owner", "CheckPage", spoil(page, "carol"), codes.InvalidArgument, "records[1].owner_id"},
		{"batch item subject", "BatchCheck", spoil(batch, "mallory"), codes.InvalidArgument, "items[1].subject_id"},
		// Decoded by protobuf-go, which refuses the string itself.
		{"field access tenant", "GetFieldAccess", spoil(&pb.GetFieldAccessRequest{TenantId: "demo", SubjectId: "bob", Module: "account"}, "demo"), codes.Internal, ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var out []byte
			err := e.conn.Invoke(ctx, authz+tt.method, &tt.req, &out, grpc.ForceCodecV2(rawCodec{}))
			if tt.field == "" {
				if code := status.Code(err); code != tt.code {
					t.Fatalf("got %v (%v), want %v", code, err, tt.code)
				}
				return
			}
			code, reason, field := errorInfo(t, err)
			if code != tt.code || field != tt.field || reason == "" {
				t.Fatalf("got %v reason=%q field=%q (%v), want %v naming %q", code, reason, field, err, tt.code, tt.field)
			}
		})
	}
}
