package server

import (
	"context"
	"errors"
	"fmt"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/recserve/recserve/catalog"
	"github.com/recserve/recserve/events"
)

// Domain errors of the serving path. toStatus is the one place they become gRPC codes.
var (
	errModelNotFound    = errors.New("model not found")
	errItemNotFound     = errors.New("item not found")
	errNotReady         = errors.New("no model version loaded yet")
	errVersionNotLoaded = errors.New("version not loaded")
)

// fieldError is a request field that failed validation.
type fieldError struct {
	field string
	desc  string
}

func (e *fieldError) Error() string { return e.field + ": " + e.desc }

func badField(field, format string, args ...any) error {
	return &fieldError{field: field, desc: fmt.Sprintf(format, args...)}
}

// notFound is a missing resource named by a request field.
type notFound struct {
	field string
	value string
	err   error
}

func (e *notFound) Error() string { return fmt.Sprintf("%s %q: %v", e.field, e.value, e.err) }
func (e *notFound) Unwrap() error { return e.err }

// toStatus maps a serving error to a gRPC status error.
func toStatus(err error) error {
	if err == nil {
		return nil
	}
	var fe *fieldError
	var nf *notFound
	var ce *catalog.InvalidError
	if errors.As(err, &ce) {
		fe = &fieldError{field: ce.Field, desc: ce.Reason}
		err = fe
	}
	switch {
	case errors.As(err, &fe):
		st := status.New(codes.InvalidArgument, err.Error())
		br := &errdetails.BadRequest{FieldViolations: []*errdetails.BadRequest_FieldViolation{{Field: fe.field, Description: fe.desc}}}
		if withDetails, derr := st.WithDetails(br); derr == nil {
			st = withDetails
		}
		return st.Err()
	case errors.As(err, &nf):
		st := status.New(codes.NotFound, err.Error())
		ri := &errdetails.ResourceInfo{ResourceType: nf.field, ResourceName: nf.value, Description: nf.err.Error()}
		if withDetails, derr := st.WithDetails(ri); derr == nil {
			st = withDetails
		}
		return st.Err()
	case errors.Is(err, errNotReady), errors.Is(err, events.ErrUnavailable), errors.Is(err, errStoreUnavailable):
		return status.Error(codes.Unavailable, err.Error())
	case errors.Is(err, errNoEventSink), errors.Is(err, errNoCanary):
		return status.Error(codes.FailedPrecondition, err.Error())
	case errors.Is(err, context.Canceled):
		return status.Error(codes.Canceled, err.Error())
	case errors.Is(err, context.DeadlineExceeded):
		return status.Error(codes.DeadlineExceeded, err.Error())
	}
	if _, ok := status.FromError(err); ok {
		return err
	}
	return status.Error(codes.Internal, err.Error())
}
