package server

import (
	"encoding/json"
	"hash/fnv"
	"time"

	recservev1 "github.com/recserve/recserve/proto/recserve/v1"
)

// rollout is a model's persisted rollout state (registry file rollout.json).
type rollout struct {
	// Stable is the version serving users outside the canary; empty follows the
	// newest loaded version, so that publishing a version rolls it out.
	Stable         string     `json:"stable,omitempty"`
	Canary         string     `json:"canary,omitempty"`
	CanaryPercent  float64    `json:"canary_percent,omitempty"`
	ShadowFraction float64    `json:"shadow_fraction,omitempty"`
	Salt           string     `json:"salt"`
	Pinned         []string   `json:"pinned,omitempty"`
	Policy         *policy    `json:"policy,omitempty"`
	Step           int        `json:"step,omitempty"`
	StepStarted    time.Time  `json:"step_started,omitempty"`
	Decisions      []decision `json:"decisions,omitempty"`
	// Ranking is the model's default re-ranking, a recserve.v1.Ranking in
	// protojson (SetRanking); empty: none.
	Ranking json.RawMessage `json:"ranking,omitempty"`
}

// policy is an automatic rollout: traffic steps, each held and then judged.
type policy struct {
	Steps          []float64     `json:"steps"`
	Hold           time.Duration `json:"hold"`
	MinImpressions int64         `json:"min_impressions"`
	CTRMargin      float64       `json:"ctr_margin"`
	Alpha          float64       `json:"alpha"`
	MaxErrorRate   float64       `json:"max_error_rate,omitempty"`
	MaxP99Ratio    float64       `json:"max_p99_ratio,omitempty"`
}

// decision is one logged rollout decision.
type decision struct {
	Time          time.Time `json:"time"`
	Kind          string    `json:"kind"`
	Version       string    `json:"version,omitempty"`
	CanaryPercent float64   `json:"canary_percent"`
	Reason        string    `json:"reason,omitempty"`
}

const maxDecisions = 200

func (r *rollout) log(now time.Time, kind, version, reason string) {
	r.Decisions = append(r.Decisions, decision{Time: now, Kind: kind, Version: version, CanaryPercent: r.CanaryPercent, Reason: reason})
	if len(r.Decisions) > maxDecisions {
		r.Decisions = r.Decisions[len(r.Decisions)-maxDecisions:]
	}
}

// heldSince reports whether a "hold" decision was logged at or after t.
func (r *rollout) heldSince(t time.Time) bool {
	for i := len(r.Decisions) - 1; i >= 0 && !r.Decisions[i].Time.Before(t); i-- {
		if r.Decisions[i].Kind == "hold" {
			return true
		}
	}
	return false
}

func (r *rollout) clearCanary() {
	r.Canary, r.CanaryPercent, r.ShadowFraction, r.Policy, r.Step = "", 0, 0, nil, 0
}

func (r *rollout) clone() *rollout {
	b, _ := json.Marshal(r)
	var c rollout
	_ = json.Unmarshal(b, &c)
	return &c
}

// view is the immutable routing table of one model, swapped atomically.
type view struct {
	name      string
	loaded    map[string]*snapshot
	stable    *snapshot
	canary    *snapshot // nil without a loaded canary
	canaryPct float64
	shadow    float64
	salt      string
	// ranking is the model's default re-ranking (nil: none) and rankingKey
	// its JSON, which cache keys include.
	ranking    *recservev1.Ranking
	rankingKey string
}

// inCanary reports whether a user falls in the canary share: a hash of the salt
// and the user id, so a user's assignment is sticky and independent across models.
func inCanary(salt, user string, percent float64) bool {
	if percent <= 0 {
		return false
	}
	h := fnv.New64a()
	h.Write([]byte(salt))
	h.Write([]byte{0})
	h.Write([]byte(user))
	return float64(h.Sum64()%10000) < percent*100
}

// route picks the snapshot for a request: an explicit version or label, else the
// sticky traffic split.
func (v *view) route(user, explicit string) (*snapshot, error) {
	switch explicit {
	case "":
		if v.canary != nil && inCanary(v.salt, user, v.canaryPct) {
			return v.canary, nil
		}
		return v.stable, nil
	case "stable":
		return v.stable, nil
	case "canary":
		if v.canary == nil {
			return nil, &notFound{field: "version", value: explicit, err: errVersionNotLoaded}
		}
		return v.canary, nil
	}
	if s, ok := v.loaded[explicit]; ok {
		return s, nil
	}
	return nil, &notFound{field: "version", value: explicit, err: errVersionNotLoaded}
}
