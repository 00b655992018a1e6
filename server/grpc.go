package server

import (
	"context"
	"runtime"
	"runtime/debug"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/reflection"
	"google.golang.org/grpc/status"

	recservev1 "github.com/recserve/recserve/proto/recserve/v1"
)

// MaxRecvMsgSize bounds request messages.
const MaxRecvMsgSize = 4 << 20

// NewGRPCServer builds the gRPC server for s: interceptors, limits, the
// recommendation service, grpc.health.v1 and server reflection.
func NewGRPCServer(s *Server, extra ...grpc.ServerOption) *grpc.Server {
	opts := append(TransportOptions(), grpc.ChainUnaryInterceptor(s.measureUnary, s.recoverUnary))
	g := grpc.NewServer(append(opts, extra...)...)
	recservev1.RegisterRecommendServiceServer(g, s)
	recservev1.RegisterEventServiceServer(g, &eventService{s: s})
	recservev1.RegisterModelAdminServiceServer(g, &adminService{s: s})
	recservev1.RegisterCatalogServiceServer(g, &catalogService{s: s})
	recservev1.RegisterUserServiceServer(g, &userService{s: s})
	healthpb.RegisterHealthServer(g, s.health)
	reflection.Register(g)
	return g
}

// TransportOptions are the server's limits and how it runs handlers, apart
// from its interceptors (bench/grpcfloor serves with them too).
func TransportOptions() []grpc.ServerOption {
	return []grpc.ServerOption{
		grpc.MaxRecvMsgSize(MaxRecvMsgSize),
		// Long-lived workers run the handlers: a new goroutine per RPC would grow
		// its stack to the depth of a search every time (copystack was 5% of the
		// server's CPU under load). gRPC starts such a goroutine for every RPC
		// that finds all workers busy, so there are enough for the RPCs in
		// flight, not just one per processor (1M items, 8 clients: 15% less CPU
		// per request than with one per processor).
		grpc.NumStreamWorkers(uint32(64 * runtime.GOMAXPROCS(0))),
	}
}

// recoverUnary turns a panic in a handler into INTERNAL instead of a crashed daemon.
func (s *Server) recoverUnary(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (resp any, err error) {
	defer func() {
		if r := recover(); r != nil {
			s.log.ErrorContext(ctx, "panic in handler", "method", info.FullMethod, "panic", r, "stack", string(debug.Stack()))
			err = status.Errorf(codes.Internal, "internal error")
		}
	}()
	return handler(ctx, req)
}
