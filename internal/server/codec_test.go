package server

import (
	"strings"
	"testing"

	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/proto"

	pb "github.com/crmauthz/crmauthz/proto/crmauthz/v1"
)

func recordPerm(id string) *pb.Permission {
	return &pb.Permission{Kind: &pb.Permission_Module{Module: &pb.ModulePermission{Module: "account", Verb: "read",
		Record: &pb.Record{Id: id, OwnerId: "user-7", DepartmentId: "sales"}}}}
}

// split cuts b into pieces of n bytes, as gRPC hands over a message that
// arrived in several frames.
func split(b []byte, n int) mem.BufferSlice {
	var out mem.BufferSlice
	for len(b) > 0 {
		k := min(n, len(b))
		out = append(out, mem.SliceBuffer(b[:k]))
		b = b[k:]
	}
	return out
}

// TestCodecDecodesAsProtobuf decodes the Check family's requests with the
// codec, from one buffer and from many, and compares them with
// protobuf-go's decoding of the same bytes, unknown fields included.
func TestCodecDecodesAsProtobuf(t *testing.T) {
	records := make([]*pb.Record, 300)
	for i := range records {
		records[i] = &pb.Record{Id: "rec-" + strings.Repeat("x", i%7), OwnerId: "user-1"}
	}
	msgs := []proto.Message{
		&pb.CheckRequest{TenantId: "acme", SubjectId: "alice", Permission: recordPerm("rec-1"), Explain: true, AtLeastRevision: 42},
		&pb.CheckPageRequest{TenantId: "acme", SubjectId: "alice", RecordPermission: recordPerm(""), Records: records,
			Permissions: []*pb.Permission{{Kind: &pb.Permission_Function{Function: &pb.FunctionPermission{Function: "report.export"}}}}},
		&pb.BatchCheckRequest{Items: []*pb.BatchCheckItem{
			{TenantId: "acme", SubjectId: "alice", Permission: recordPerm("rec-2")},
			{TenantId: "globex", SubjectId: "bob", Permission: &pb.Permission{Kind: &pb.Permission_Field{Field: &pb.FieldPermission{Module: "account", Field: "phone", Access: pb.FieldAccessMode_FIELD_ACCESS_MODE_WRITE}}}},
		}},
	}
	c := newCodec()
	for _, m := range msgs {
		data, err := proto.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		data = append(data, 0xf8, 0x3e, 0x07) // field 999, a varint: unknown to every message
		want := m.ProtoReflect().New().Interface()
		if err := proto.Unmarshal(data, want); err != nil {
			t.Fatal(err)
		}
		for _, piece := range []int{len(data), 5} {
			got := m.ProtoReflect().New().Interface()
			if err := c.Unmarshal(split(data, piece), got); err != nil {
				t.Fatalf("%T in pieces of %d: %v", m, piece, err)
			}
			if !proto.Equal(got, want) {
				t.Fatalf("%T in pieces of %d decoded as\n%v\nwant\n%v", m, piece, got, want)
			}
		}
	}
}

// TestCodecEncodesAsProtobuf encodes responses with the codec, small and
// over gRPC's pooling threshold, and decodes them with protobuf-go.
func TestCodecEncodesAsProtobuf(t *testing.T) {
	msgs := []proto.Message{
		&pb.CheckResponse{Allowed: true, Revision: 7, DecisionId: "d-1", Reasons: []*pb.Reason{{RoleId: "sales_rep", Message: "granted"}}},
		&pb.CheckResponse{Allowed: true, Revision: 7, DecisionId: "crmauthz-0a1b2c3d-000000000000000000012345"},
		&pb.CheckResponse{},
		&pb.CheckPageResponse{PermissionsAllowed: make([]bool, smallMessage-4), Revision: 3}, // the largest small one
		&pb.CheckPageResponse{PermissionsAllowed: make([]bool, smallMessage-3), Revision: 3}, // one byte over
		&pb.CheckPageResponse{RecordsAllowed: make([]bool, 5000), PermissionsAllowed: []bool{true, false}, Revision: 3},
	}
	c := newCodec()
	for _, m := range msgs {
		out, err := c.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		got := m.ProtoReflect().New().Interface()
		if err := proto.Unmarshal(out.Materialize(), got); err != nil {
			t.Fatal(err)
		}
		out.Free()
		if !proto.Equal(got, m) {
			t.Fatalf("%T encoded and decoded as\n%v\nwant\n%v", m, got, m)
		}
	}
}

// TestCodecEncodesSmallAnswersInOneAllocation: a Check's answer is encoded
// with one allocation (it took three).
func TestCodecEncodesSmallAnswersInOneAllocation(t *testing.T) {
	c := newCodec()
	m := &pb.CheckResponse{Allowed: true, Revision: 7, DecisionId: "crmauthz-0a1b2c3d-000000000000000000012345"}
	if n := testing.AllocsPerRun(100, func() {
		out, err := c.Marshal(m)
		if err != nil || out.Len() != proto.Size(m) {
			t.Fatal(err)
		}
	}); n != 1 {
		t.Fatalf("encoding a CheckResponse allocates %v times, want 1", n)
	}
}

// TestCodecDecodesCheckFamilyFast: the three requests of the Check family
// take the generated decoder, which, unlike protobuf-go's, lets a string
// that is not UTF-8 through to the handlers (which refuse it,
// TestInvalidUTF8 in internal/app).
func TestCodecDecodesCheckFamilyFast(t *testing.T) {
	c := newCodec()
	// Field 1 of each, tenant_id (a BatchCheckItem's for BatchCheckRequest,
	// inside its field 1), of two bytes that are not UTF-8.
	tenant := []byte{0x0a, 0x02, 0xff, 0xfe}
	for _, tc := range []struct {
		msg  proto.Message
		data []byte
	}{
		{&pb.CheckRequest{}, tenant},
		{&pb.CheckPageRequest{}, tenant},
		{&pb.BatchCheckRequest{}, append([]byte{0x0a, byte(len(tenant))}, tenant...)},
	} {
		if err := proto.Unmarshal(tc.data, tc.msg.ProtoReflect().New().Interface()); err == nil {
			t.Fatalf("protobuf-go decoded a %T with a tenant id that is not UTF-8", tc.msg)
		}
		if err := c.Unmarshal(mem.BufferSlice{mem.SliceBuffer(tc.data)}, tc.msg); err != nil {
			t.Fatalf("%T: %v, want the generated decoder", tc.msg, err)
		}
	}
}

// TestCodecFallsBack: messages without generated code, and requests
// outside the Check family, take gRPC's codec, which refuses a string that
// is not UTF-8 as before.
func TestCodecFallsBack(t *testing.T) {
	c := newCodec()
	out, err := c.Marshal(&healthpb.HealthCheckRequest{Service: "crmauthz"})
	if err != nil {
		t.Fatal(err)
	}
	var h healthpb.HealthCheckRequest
	if err := c.Unmarshal(out, &h); err != nil || h.GetService() != "crmauthz" {
		t.Fatalf("health request: %v, %v", &h, err)
	}
	// GetFieldAccessRequest field 1, tenant_id, of two bytes that are not UTF-8.
	bad := mem.BufferSlice{mem.SliceBuffer([]byte{0x0a, 0x02, 0xff, 0xfe})}
	if err := c.Unmarshal(bad, &pb.GetFieldAccessRequest{}); err == nil || !strings.Contains(err.Error(), "UTF-8") {
		t.Fatalf("a GetFieldAccess request with a tenant id that is not UTF-8 decoded: %v", err)
	}
}
