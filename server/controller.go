package server

import (
	"errors"
	"fmt"
	"math"
	"sync"
	"time"

	"gonum.org/v1/gonum/stat/distuv"
)

// The rollout controller judges each held policy step on the confidence
// interval of CTR(canary) - CTR(stable) at the policy's alpha (one-sided
// bounds): the canary advances when the lower bound is above -margin (not
// worse, a non-inferiority test; "better" when it is above 0), is rolled back
// when the upper bound is below -margin (worse) or its error rate or p99
// latency is out of bounds, and otherwise, inconclusive, holds the step and
// keeps collecting impressions until one of the two is shown. Every verdict
// is logged with its reason.

type verdict int

const (
	hold verdict = iota // too few impressions yet
	advance
	rollBack
	inconclusive // enough impressions, but neither worse nor not worse shown
)

// baselines are the cumulative counters of both versions when a step started.
type baselines struct {
	mu sync.Mutex
	m  map[string][2]counts // model -> {stable, canary}
}

func (b *baselines) get(model string) [2]counts {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.m[model]
}

func (b *baselines) set(model string, c [2]counts) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.m == nil {
		b.m = map[string][2]counts{}
	}
	b.m[model] = c
}

var errStale = errors.New("rollout changed meanwhile")

// evaluateRollouts judges every model whose policy step has been held long enough.
func (s *Server) evaluateRollouts(now time.Time) {
	for _, name := range s.models.names() {
		v, _ := s.models.get(name)
		st := s.models.state(name)
		if st.Policy == nil || v.canary == nil || v.canary.version != st.Canary || now.Sub(st.StepStarted) < st.Policy.Hold {
			continue
		}
		base := s.baselines.get(name)
		sc, cc := s.stats.of(name, v.stable.version).cumulative(), s.stats.of(name, v.canary.version).cumulative()
		verdict, reason := judge(st.Policy, sc.sub(&base[0]), cc.sub(&base[1]))
		if verdict == hold || verdict == inconclusive && st.heldSince(st.StepStarted) {
			continue
		}
		_, err := s.models.update(name, func(next *rollout, now time.Time) error {
			if next.Canary != st.Canary || next.Step != st.Step || next.Policy == nil {
				return errStale
			}
			if verdict == inconclusive { // logged once a step; the step's sample keeps growing
				next.log(now, "hold", next.Canary, reason)
				return nil
			}
			if verdict == rollBack {
				version := next.Canary
				next.clearCanary()
				next.log(now, "rollback", version, reason)
				return nil
			}
			next.Step++
			if next.Step >= len(next.Policy.Steps) || next.Policy.Steps[next.Step] >= 100 {
				version := next.Canary
				next.Stable = version
				next.clearCanary()
				next.log(now, "promote", version, reason)
				return nil
			}
			next.CanaryPercent = next.Policy.Steps[next.Step]
			next.StepStarted = now
			next.log(now, "advance", next.Canary, reason)
			return nil
		})
		if err != nil {
			if !errors.Is(err, errStale) {
				s.log.Error("rollout decision not saved", "model", name, "err", err)
			}
			continue
		}
		if verdict != inconclusive {
			s.baselines.set(name, [2]counts{sc, cc})
		}
		s.log.Info("rollout decision", "model", name, "canary", st.Canary, "verdict", verdict, "reason", reason)
	}
}

// judge compares canary with stable over one step.
func judge(p *policy, stable, canary counts) (verdict, string) {
	if canary.impressions < p.MinImpressions || stable.impressions < p.MinImpressions {
		return hold, ""
	}
	if p.MaxErrorRate > 0 && canary.requests > 0 {
		if rate := float64(canary.errors) / float64(canary.requests); rate > p.MaxErrorRate {
			return rollBack, fmt.Sprintf("canary error rate %.4f above %.4f", rate, p.MaxErrorRate)
		}
	}
	if p.MaxP99Ratio > 0 && stable.p99() > 0 && canary.p99() > p.MaxP99Ratio*stable.p99() {
		return rollBack, fmt.Sprintf("canary p99 %.2f ms above %.1fx stable's %.2f ms", canary.p99(), p.MaxP99Ratio, stable.p99())
	}
	nc, ns := float64(canary.impressions), float64(stable.impressions)
	pc, ps := float64(canary.clicks)/nc, float64(stable.clicks)/ns
	se := math.Sqrt(pc*(1-pc)/nc + ps*(1-ps)/ns)
	z := distuv.UnitNormal.Quantile(1 - p.Alpha)
	lower, upper := (pc-ps)-z*se, (pc-ps)+z*se // one-sided confidence bounds of the CTR difference
	summary := fmt.Sprintf("CTR canary %.4f (n=%d) vs stable %.4f (n=%d); %.0f%% bounds of the difference %.4f to %.4f, margin %.4f",
		pc, canary.impressions, ps, stable.impressions, 100*(1-p.Alpha), lower, upper, p.CTRMargin)
	switch {
	case lower > 0:
		return advance, "better: " + summary
	case lower > -p.CTRMargin:
		return advance, "not worse: " + summary
	case upper < -p.CTRMargin:
		return rollBack, "worse: " + summary
	}
	return inconclusive, "inconclusive, holding the step for more impressions: " + summary
}
