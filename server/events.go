package server

import (
	"context"
	"errors"
	"time"

	"github.com/recserve/recserve/events"
	recservev1 "github.com/recserve/recserve/proto/recserve/v1"
)

var errNoEventSink = errors.New("no event broker configured")

// eventService implements recserve.v1.EventService on top of a Server's EventSink.
type eventService struct {
	recservev1.UnimplementedEventServiceServer
	s *Server
}

// RecordEvents validates a batch and returns once the broker acknowledged all of it.
func (e *eventService) RecordEvents(ctx context.Context, req *recservev1.RecordEventsRequest) (*recservev1.RecordEventsResponse, error) {
	now := time.Now()
	evs := req.GetEvents()
	if err := events.Validate(evs, now); err != nil {
		var inv *events.InvalidError
		if errors.As(err, &inv) {
			return nil, toStatus(&fieldError{field: inv.FieldPath(), desc: inv.Reason})
		}
		return nil, toStatus(err)
	}
	if e.s.opts.Events == nil {
		return nil, toStatus(errNoEventSink)
	}
	events.Normalize(evs, now)
	if err := e.s.opts.Events.Produce(ctx, evs); err != nil {
		return nil, toStatus(err)
	}
	e.s.countEvents(ctx, evs)
	return &recservev1.RecordEventsResponse{Accepted: int32(len(evs))}, nil
}
