package eventlog

import (
	"math"

	"github.com/recserve/recserve/events"
	recservev1 "github.com/recserve/recserve/proto/recserve/v1"
	"github.com/recserve/recserve/trainer"
)

// Dataset reads the stored events back into a training set: one interaction
// per (user, item) with the weights of its events summed. Impressions are
// feedback, not interactions, and are left out, as are events of an unknown
// type; a zero weight is the type's default (events.Weight), and an event
// whose weight is still not a positive float32 is left out.
func (l *Log) Dataset() (*trainer.Dataset, error) { return l.DatasetOf(nil) }

// DatasetOf is Dataset of the events keep accepts (nil: all of them); the
// trainer leaves out the events of deleted items with it.
func (l *Log) DatasetOf(keep func(e *recservev1.Event) bool) (*trainer.Dataset, error) {
	d := trainer.NewDataset()
	err := l.Each(func(e *recservev1.Event) error {
		if keep != nil && !keep(e) {
			return nil
		}
		if w, ok := interactionWeight(e); ok {
			d.Add(e.GetUserId(), e.GetItemId(), w)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return d, nil
}

func interactionWeight(e *recservev1.Event) (float32, bool) {
	t := e.GetType()
	if _, known := recservev1.EventType_name[int32(t)]; !known ||
		t == recservev1.EventType_EVENT_TYPE_UNSPECIFIED || t == recservev1.EventType_EVENT_TYPE_IMPRESSION {
		return 0, false
	}
	if e.GetUserId() == "" || e.GetItemId() == "" {
		return 0, false
	}
	w := e.GetWeight()
	if w == 0 {
		w = events.Weight(t)
	}
	if !(w > 0) || w > math.MaxFloat32 {
		return 0, false
	}
	return float32(w), true
}
