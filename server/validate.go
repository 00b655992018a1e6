package server

import (
	"fmt"
	"unicode/utf8"

	recservev1 "github.com/recserve/recserve/proto/recserve/v1"
)

// Request limits.
const (
	DefaultN      = 10
	MaxN          = 1000
	MaxIDLen      = 256
	MaxFilterLen  = 1000
	MaxBatchUsers = 100
)

func validateID(field, id string) error {
	switch {
	case id == "":
		return badField(field, "must not be empty")
	case len(id) > MaxIDLen:
		return badField(field, "longer than %d bytes", MaxIDLen)
	case !utf8.ValidString(id):
		return badField(field, "not valid UTF-8")
	}
	return nil
}

func validateModel(model string) error {
	if model == "" {
		return nil
	}
	return validateID("model", model)
}

// resolveN applies the default and bounds of the optional n field.
func resolveN(n *int32) (int, error) {
	if n == nil {
		return DefaultN, nil
	}
	if *n <= 0 || *n > MaxN {
		return 0, badField("n", "must be between 1 and %d, got %d", MaxN, *n)
	}
	return int(*n), nil
}

func validateFilter(f *recservev1.Filter) error {
	if f == nil {
		return nil
	}
	lists := []struct {
		name string
		ids  []string
	}{
		{"filter.include_categories", f.GetIncludeCategories()},
		{"filter.exclude_categories", f.GetExcludeCategories()},
		{"filter.exclude_item_ids", f.GetExcludeItemIds()},
	}
	for _, l := range lists {
		if len(l.ids) > MaxFilterLen {
			return badField(l.name, "at most %d entries, got %d", MaxFilterLen, len(l.ids))
		}
		for i, id := range l.ids {
			if err := validateID(fmt.Sprintf("%s[%d]", l.name, i), id); err != nil {
				return err
			}
		}
	}
	return nil
}

func validateRecommend(r *recservev1.RecommendRequest) (int, error) {
	if err := validateID("user_id", r.GetUserId()); err != nil {
		return 0, err
	}
	n, err := validateCommon(r.GetModel(), r.GetVersion(), r.N, r.GetFilter())
	if err != nil {
		return 0, err
	}
	return n, validateRanking(r.GetRanking(), n)
}

func validateSimilar(r *recservev1.SimilarItemsRequest) (int, error) {
	if err := validateID("item_id", r.GetItemId()); err != nil {
		return 0, err
	}
	return validateCommon(r.GetModel(), r.GetVersion(), r.N, r.GetFilter())
}

func validateBatch(r *recservev1.BatchRecommendRequest) (int, error) {
	users := r.GetUserIds()
	if len(users) == 0 || len(users) > MaxBatchUsers {
		return 0, badField("user_ids", "must hold 1 to %d ids, got %d", MaxBatchUsers, len(users))
	}
	for i, u := range users {
		if err := validateID(fmt.Sprintf("user_ids[%d]", i), u); err != nil {
			return 0, err
		}
	}
	n, err := validateCommon(r.GetModel(), r.GetVersion(), r.N, r.GetFilter())
	if err != nil {
		return 0, err
	}
	return n, validateRanking(r.GetRanking(), n)
}

func validateCommon(model, version string, n *int32, f *recservev1.Filter) (int, error) {
	if err := validateModel(model); err != nil {
		return 0, err
	}
	if version != "" {
		if err := validateID("version", version); err != nil {
			return 0, err
		}
	}
	if err := validateFilter(f); err != nil {
		return 0, err
	}
	return resolveN(n)
}
