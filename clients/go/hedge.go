package recserveclient

import (
	"context"
	"slices"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

// hedge implements p for methods, as gRFC A6 describes hedging: start an attempt,
// start another each time Delay passes without an answer (or at once when one fails
// with a non-fatal code, UNAVAILABLE), return the first success or the first fatal
// error, and cancel the attempts still in flight. Round-robin picking sends each
// attempt to the next server.
func hedge(p HedgingPolicy, methods []string) grpc.UnaryClientInterceptor {
	return func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
		out, ok := reply.(proto.Message)
		if !ok || !slices.Contains(methods, method) {
			return invoker(ctx, method, req, reply, cc, opts...)
		}
		ctx, cancel := context.WithCancel(ctx)
		defer cancel() // ends the attempts still in flight

		type result struct {
			msg proto.Message
			err error
		}
		// Buffered for every attempt, so none blocks after the winner returned.
		results := make(chan result, p.MaxAttempts)
		started := 0
		launch := func() {
			started++
			msg := out.ProtoReflect().New().Interface()
			go func() {
				err := invoker(ctx, method, req, msg, cc, opts...)
				results <- result{msg, err}
			}()
		}
		launch()
		timer := time.NewTimer(p.Delay)
		defer timer.Stop()
		var lastErr error
		for finished := 0; ; {
			select {
			case <-timer.C:
				if started < p.MaxAttempts {
					launch()
					timer.Reset(p.Delay)
				}
			case r := <-results:
				finished++
				if r.err == nil {
					proto.Reset(out)
					proto.Merge(out, r.msg)
					return nil
				}
				lastErr = r.err
				if status.Code(r.err) != codes.Unavailable {
					return r.err
				}
				if started < p.MaxAttempts {
					launch()
					timer.Reset(p.Delay)
				} else if finished == started {
					return lastErr
				}
			}
		}
	}
}
