package main

import (
	"context"
	"fmt"
	"io"
	"net"

	"google.golang.org/grpc"

	pb "github.com/crmauthz/crmauthz/proto/crmauthz/v1"
)

// noop answers the calls authzload makes without deciding anything: gRPC
// decodes every request and encodes an answer of the same shape as
// authzd's, which is the framework's cost the ratios are taken against.
type noop struct {
	pb.UnimplementedAuthorizationServiceServer
	pb.UnimplementedAdminServiceServer
}

func (noop) Check(context.Context, *pb.CheckRequest) (*pb.CheckResponse, error) {
	return &pb.CheckResponse{Allowed: true, Revision: 1}, nil
}

func (noop) CheckPage(_ context.Context, req *pb.CheckPageRequest) (*pb.CheckPageResponse, error) {
	return &pb.CheckPageResponse{
		PermissionsAllowed: make([]bool, len(req.GetPermissions())),
		RecordsAllowed:     make([]bool, len(req.GetRecords())),
		Revision:           1,
	}, nil
}

func (noop) BatchCheck(_ context.Context, req *pb.BatchCheckRequest) (*pb.BatchCheckResponse, error) {
	out := &pb.BatchCheckResponse{Results: make([]*pb.BatchCheckResult, len(req.GetItems()))}
	results := make([]pb.BatchCheckResult, len(req.GetItems()))
	for i := range results {
		results[i].Revision = 1
		out.Results[i] = &results[i]
	}
	return out, nil
}

func (noop) GrantRole(context.Context, *pb.GrantRoleRequest) (*pb.GrantRoleResponse, error) {
	return &pb.GrantRoleResponse{Revision: 1}, nil
}

func (noop) RevokeRole(context.Context, *pb.RevokeRoleRequest) (*pb.RevokeRoleResponse, error) {
	return &pb.RevokeRoleResponse{Revision: 1}, nil
}

// serveNoop serves the no-op on a free loopback port, printing its address
// on the first line of stdout, until ctx ends.
func serveNoop(ctx context.Context, stdout io.Writer) error {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	s := grpc.NewServer()
	pb.RegisterAuthorizationServiceServer(s, noop{})
	pb.RegisterAdminServiceServer(s, noop{})
	if _, err := fmt.Fprintln(stdout, lis.Addr()); err != nil {
		return err
	}
	go func() {
		<-ctx.Done()
		s.Stop()
	}()
	return s.Serve(lis)
}
