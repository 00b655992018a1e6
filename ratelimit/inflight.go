package ratelimit

import (
	"context"
	"fmt"
	"sync/atomic"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// InFlight caps the requests (unary calls and open streams) the server handles at
// once. A request beyond the cap is rejected at once with RESOURCE_EXHAUSTED rather
// than queued: RESOURCE_EXHAUSTED, unlike UNAVAILABLE, is not retried by gRPC retry
// policies or hedging (recserve's Go client retries and hedges on UNAVAILABLE), so an
// overloaded server is not hit again immediately; grpc-gateway answers it with 429.
// grpc.health.v1 is neither counted nor limited.
type InFlight struct {
	max int64
	n   atomic.Int64
}

// NewInFlight returns a cap of max requests in flight; max must be positive.
func NewInFlight(max int) (*InFlight, error) {
	if max <= 0 {
		return nil, fmt.Errorf("ratelimit: in-flight limit %d: want > 0", max)
	}
	return &InFlight{max: int64(max)}, nil
}

// Current returns the number of requests in flight.
func (f *InFlight) Current() int { return int(f.n.Load()) }

// acquire takes a slot for fullMethod; release must be called when it is done.
func (f *InFlight) acquire(fullMethod string) (release func(), err error) {
	if exempt([]string{healthService + "*"}, fullMethod) {
		return func() {}, nil
	}
	if f.n.Add(1) > f.max {
		f.n.Add(-1)
		return nil, status.Errorf(codes.ResourceExhausted, "server busy: %d requests in flight", f.max)
	}
	return func() { f.n.Add(-1) }, nil
}

// UnaryInterceptor caps unary calls. Install it first, so a rejected call costs no
// authentication.
func (f *InFlight) UnaryInterceptor() grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		release, err := f.acquire(info.FullMethod)
		if err != nil {
			return nil, err
		}
		defer release()
		return handler(ctx, req)
	}
}

// StreamInterceptor caps open streams.
func (f *InFlight) StreamInterceptor() grpc.StreamServerInterceptor {
	return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
		release, err := f.acquire(info.FullMethod)
		if err != nil {
			return err
		}
		defer release()
		return handler(srv, ss)
	}
}
