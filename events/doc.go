// Package events is the Kafka side of the event contract (recserve.v1.Event):
// validation and defaults for RecordEvents batches, a producer that returns once
// the broker has acknowledged a batch, a group consumer that commits a batch only
// after it was handled, and an in-process broker for the demo and tests.
//
// Records carry one proto-marshaled Event each, keyed by user id, so that a user's
// events stay in order on one partition.
package events
