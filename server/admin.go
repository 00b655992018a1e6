package server

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/types/known/timestamppb"

	recservev1 "github.com/recserve/recserve/proto/recserve/v1"
	"github.com/recserve/recserve/registry"
)

var errNoCanary = errors.New("the model has no canary")

// adminService implements recserve.v1.ModelAdminService.
type adminService struct {
	recservev1.UnimplementedModelAdminServiceServer
	s *Server
}

func (a *adminService) ListModels(ctx context.Context, _ *recservev1.ListModelsRequest) (*recservev1.ListModelsResponse, error) {
	resp := &recservev1.ListModelsResponse{}
	for _, name := range a.s.models.names() {
		st, err := a.s.modelStatus(name)
		if err != nil {
			return nil, toStatus(err)
		}
		resp.Models = append(resp.Models, st)
	}
	return resp, nil
}

func (a *adminService) GetModel(ctx context.Context, req *recservev1.GetModelRequest) (*recservev1.GetModelResponse, error) {
	if _, err := a.s.versionsOf(req.GetModel()); err != nil {
		return nil, toStatus(err)
	}
	st, err := a.s.modelStatus(req.GetModel())
	return &recservev1.GetModelResponse{Model: st}, toStatus(err)
}

func (a *adminService) SetCanary(ctx context.Context, req *recservev1.SetCanaryRequest) (*recservev1.SetCanaryResponse, error) {
	versions, err := a.s.versionsOf(req.GetModel())
	if err != nil {
		return nil, toStatus(err)
	}
	if req.GetVersion() != "" && !slices.Contains(versions, req.GetVersion()) {
		return nil, toStatus(&notFound{field: "version", value: req.GetVersion(), err: registry.ErrNotFound})
	}
	if p := req.GetPercent(); p < 0 || p > 100 {
		return nil, toStatus(badField("percent", "must be between 0 and 100, got %v", p))
	}
	if f := req.GetShadowFraction(); f < 0 || f > 1 {
		return nil, toStatus(badField("shadow_fraction", "must be between 0 and 1, got %v", f))
	}
	pol, err := policyFrom(req.GetPolicy())
	if err != nil {
		return nil, toStatus(err)
	}
	current, _ := a.s.models.get(req.GetModel())
	_, err = a.s.models.update(req.GetModel(), func(st *rollout, now time.Time) error {
		if st.Stable == "" && current != nil {
			st.Stable = current.stable.version // a canary needs a fixed stable to compare with
		}
		version := req.GetVersion()
		if version == "" {
			version = st.Canary
		}
		switch {
		case version == "":
			return badField("version", "required: the model has no canary yet")
		case version == st.Stable:
			return badField("version", "%s is already the stable version", version)
		}
		st.Canary, st.CanaryPercent, st.ShadowFraction = version, req.GetPercent(), req.GetShadowFraction()
		st.Policy, st.Step = pol, 0
		reason := ""
		if pol != nil {
			st.CanaryPercent, st.StepStarted = pol.Steps[0], now
			reason = fmt.Sprintf("automatic rollout through %v%%", pol.Steps)
		}
		st.log(now, "set_canary", version, reason)
		return nil
	})
	if err != nil {
		return nil, toStatus(err)
	}
	a.s.resetBaseline(req.GetModel())
	a.s.refreshSoon()
	st, err := a.s.modelStatus(req.GetModel())
	return &recservev1.SetCanaryResponse{Model: st}, toStatus(err)
}

func (a *adminService) Promote(ctx context.Context, req *recservev1.PromoteRequest) (*recservev1.PromoteResponse, error) {
	if _, err := a.s.versionsOf(req.GetModel()); err != nil {
		return nil, toStatus(err)
	}
	_, err := a.s.models.update(req.GetModel(), func(st *rollout, now time.Time) error {
		if st.Canary == "" {
			return errNoCanary
		}
		version := st.Canary
		st.Stable = version
		st.clearCanary()
		st.log(now, "promote", version, "manual")
		return nil
	})
	if err != nil {
		return nil, toStatus(err)
	}
	st, err := a.s.modelStatus(req.GetModel())
	return &recservev1.PromoteResponse{Model: st}, toStatus(err)
}

func (a *adminService) Rollback(ctx context.Context, req *recservev1.RollbackRequest) (*recservev1.RollbackResponse, error) {
	if _, err := a.s.versionsOf(req.GetModel()); err != nil {
		return nil, toStatus(err)
	}
	reason := req.GetReason()
	if reason == "" {
		reason = "manual"
	}
	_, err := a.s.models.update(req.GetModel(), func(st *rollout, now time.Time) error {
		if st.Canary == "" {
			return errNoCanary
		}
		version := st.Canary
		st.clearCanary()
		st.log(now, "rollback", version, reason)
		return nil
	})
	if err != nil {
		return nil, toStatus(err)
	}
	st, err := a.s.modelStatus(req.GetModel())
	return &recservev1.RollbackResponse{Model: st}, toStatus(err)
}

// SetRanking sets (or, empty, clears) the model's default re-ranking.
func (a *adminService) SetRanking(ctx context.Context, req *recservev1.SetRankingRequest) (*recservev1.SetRankingResponse, error) {
	if _, err := a.s.versionsOf(req.GetModel()); err != nil {
		return nil, toStatus(err)
	}
	r := req.GetRanking()
	if err := validateRanking(r, MaxN); err != nil {
		return nil, toStatus(err)
	}
	var raw []byte
	if rankingActive(r) {
		var err error
		if raw, err = protojson.Marshal(r); err != nil {
			return nil, toStatus(err)
		}
	}
	_, err := a.s.models.update(req.GetModel(), func(st *rollout, now time.Time) error {
		st.Ranking = raw
		reason := "cleared"
		if raw != nil {
			reason = string(raw)
		}
		st.log(now, "ranking", "", reason)
		return nil
	})
	if err != nil {
		return nil, toStatus(err)
	}
	m, err := a.s.modelStatus(req.GetModel())
	if err != nil {
		return nil, toStatus(err)
	}
	return &recservev1.SetRankingResponse{Model: m}, nil
}

func (a *adminService) Pin(ctx context.Context, req *recservev1.PinRequest) (*recservev1.PinResponse, error) {
	versions, err := a.s.versionsOf(req.GetModel())
	if err != nil {
		return nil, toStatus(err)
	}
	version := req.GetVersion()
	if version != "" && !slices.Contains(versions, version) {
		return nil, toStatus(&notFound{field: "version", value: version, err: registry.ErrNotFound})
	}
	if version == "" && req.GetStable() {
		return nil, toStatus(badField("version", "required with stable"))
	}
	_, err = a.s.models.update(req.GetModel(), func(st *rollout, now time.Time) error {
		if version == "" {
			st.Pinned = nil
			st.log(now, "unpin", "", "")
			return nil
		}
		if !slices.Contains(st.Pinned, version) {
			st.Pinned = append(st.Pinned, version)
		}
		reason := "keep loaded"
		if req.GetStable() {
			if version == st.Canary {
				st.clearCanary()
			}
			st.Stable = version
			reason = "keep loaded and serve as stable"
		}
		st.log(now, "pin", version, reason)
		return nil
	})
	if err != nil {
		return nil, toStatus(err)
	}
	a.s.refreshSoon()
	st, err := a.s.modelStatus(req.GetModel())
	return &recservev1.PinResponse{Model: st}, toStatus(err)
}

// versionsOf validates a model name from an admin request and lists its versions.
func (s *Server) versionsOf(model string) ([]string, error) {
	if err := validateID("model", model); err != nil {
		return nil, err
	}
	versions, err := s.opts.Registry.Versions(model)
	if errors.Is(err, registry.ErrNotFound) || errors.Is(err, registry.ErrInvalid) {
		return nil, &notFound{field: "model", value: model, err: errModelNotFound}
	}
	return versions, err
}

// policyFrom validates a rollout policy from a request; nil means none.
func policyFrom(p *recservev1.RolloutPolicy) (*policy, error) {
	if p == nil {
		return nil, nil
	}
	out := &policy{
		Steps: p.GetSteps(), Hold: time.Duration(p.GetHoldSeconds() * float64(time.Second)),
		MinImpressions: p.GetMinImpressions(), CTRMargin: p.GetCtrMargin(), Alpha: p.GetAlpha(),
		MaxErrorRate: p.GetMaxErrorRate(), MaxP99Ratio: p.GetMaxP99Ratio(),
	}
	if out.Alpha == 0 {
		out.Alpha = 0.05
	}
	if len(out.Steps) == 0 {
		return nil, badField("policy.steps", "must not be empty")
	}
	for i, step := range out.Steps {
		if step <= 0 || step > 100 || i > 0 && step <= out.Steps[i-1] {
			return nil, badField(fmt.Sprintf("policy.steps[%d]", i), "steps must increase within (0, 100], got %v", step)
		}
	}
	switch {
	case out.Hold <= 0:
		return nil, badField("policy.hold_seconds", "must be positive")
	case out.MinImpressions < 0:
		return nil, badField("policy.min_impressions", "must not be negative")
	case out.CTRMargin < 0 || out.CTRMargin >= 1:
		return nil, badField("policy.ctr_margin", "must be in [0, 1)")
	case out.Alpha <= 0 || out.Alpha >= 0.5:
		return nil, badField("policy.alpha", "must be in (0, 0.5)")
	case out.MaxErrorRate < 0 || out.MaxErrorRate > 1:
		return nil, badField("policy.max_error_rate", "must be in [0, 1]")
	case out.MaxP99Ratio < 0:
		return nil, badField("policy.max_p99_ratio", "must not be negative")
	}
	return out, nil
}

// modelStatus reports a model's versions, labels, traffic, live metrics and log.
func (s *Server) modelStatus(name string) (*recservev1.ModelStatus, error) {
	versions, err := s.versionsOf(name)
	if err != nil {
		return nil, err
	}
	st := s.models.state(name)
	v, _ := s.models.get(name)
	out := &recservev1.ModelStatus{
		Model: name, CanaryVersion: st.Canary, CanaryPercent: st.CanaryPercent, ShadowFraction: st.ShadowFraction,
		PolicyStep: int32(st.Step), Waiting: s.models.waitingFor(name),
	}
	if v != nil {
		out.StableVersion, out.Ranking = v.stable.version, v.ranking
	}
	for key, why := range s.models.failures() {
		if model, version, _ := strings.Cut(key, "/"); model == name {
			out.LoadErrors = append(out.LoadErrors, version+": "+why)
		}
	}
	slices.Sort(out.LoadErrors)
	if p := st.Policy; p != nil {
		out.Policy = &recservev1.RolloutPolicy{
			Steps: p.Steps, HoldSeconds: p.Hold.Seconds(), MinImpressions: p.MinImpressions, CtrMargin: p.CTRMargin,
			Alpha: p.Alpha, MaxErrorRate: p.MaxErrorRate, MaxP99Ratio: p.MaxP99Ratio,
		}
	}
	now := s.opts.Clock()
	for _, ver := range versions {
		vs := &recservev1.VersionStatus{Version: ver, Pinned: slices.Contains(st.Pinned, ver)}
		if v != nil {
			_, vs.Loaded = v.loaded[ver]
		}
		if ver == out.StableVersion {
			vs.Labels = append(vs.Labels, "stable")
		}
		if ver == st.Canary {
			vs.Labels = append(vs.Labels, "canary")
		}
		w := s.stats.of(name, ver).window(now)
		vs.Metrics = w.proto()
		out.Versions = append(out.Versions, vs)
	}
	for _, d := range st.Decisions {
		out.Decisions = append(out.Decisions, &recservev1.RolloutDecision{
			Time: timestamppb.New(d.Time), Kind: d.Kind, Version: d.Version, CanaryPercent: d.CanaryPercent, Reason: d.Reason,
		})
	}
	return out, nil
}
