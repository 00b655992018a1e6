package trainer

import (
	"errors"
	"fmt"
	"math"
	"runtime"
)

// ErrOptions is wrapped by every error about invalid Options.
var ErrOptions = errors.New("invalid trainer options")

// Options configures Train and fold-in. The objective they define is
// described in the package documentation.
type Options struct {
	// Factors is the embedding dimension.
	Factors int
	// Iterations is the number of alternating sweeps (users, then items).
	Iterations int
	// Reg is the regularization scale λ.
	Reg float64
	// Alpha scales event weights into extra confidence: an observed pair
	// with summed weight r has confidence Unobserved + Alpha·r.
	Alpha float64
	// Unobserved is α0, the weight of every unobserved (user, item) pair.
	Unobserved float64
	// RegExponent is ν in the frequency-scaled regularization
	// λ_u = Reg·(|items of u| + Unobserved·|items|)^ν (and symmetrically for
	// items). 0 gives plain L2 regularization with weight Reg.
	RegExponent float64
	// CGSteps is the number of conjugate-gradient steps per row update,
	// warm-started from the previous value of the row. 0 solves every row
	// exactly with a Cholesky factorization, which costs O(Factors³) per row
	// instead of O(CGSteps·Factors²).
	CGSteps int
	// Seed seeds the random initialization. Results depend only on the
	// seed and the other options, not on Workers.
	Seed int64
	// Workers is the number of goroutines; 0 means runtime.GOMAXPROCS(0).
	Workers int
}

// DefaultOptions returns the settings tuned on a validation split of the
// Gowalla training data (20% of each user's items held out; see README.md
// in this directory for the sweep and the test-set numbers). They fit the
// budget of about a minute of training on 2 cores for Gowalla's 810k
// interactions; smaller data can afford more Iterations.
func DefaultOptions() Options {
	return Options{
		Factors:     768,
		Iterations:  6,
		Reg:         0.003,
		Alpha:       1,
		Unobserved:  0.01,
		RegExponent: 1,
		CGSteps:     2,
		Seed:        1,
	}
}

// Validate reports whether the options describe a well-posed problem.
func (o Options) Validate() error {
	finite := func(v float64) bool { return !math.IsNaN(v) && !math.IsInf(v, 0) }
	switch {
	case o.Factors <= 0:
		return fmt.Errorf("%w: Factors %d must be positive", ErrOptions, o.Factors)
	case o.Iterations < 0:
		return fmt.Errorf("%w: Iterations %d must not be negative", ErrOptions, o.Iterations)
	case !finite(o.Reg) || o.Reg <= 0:
		return fmt.Errorf("%w: Reg %v must be positive", ErrOptions, o.Reg)
	case !finite(o.Alpha) || o.Alpha < 0:
		return fmt.Errorf("%w: Alpha %v must not be negative", ErrOptions, o.Alpha)
	case !finite(o.Unobserved) || o.Unobserved < 0:
		return fmt.Errorf("%w: Unobserved %v must not be negative", ErrOptions, o.Unobserved)
	case !finite(o.RegExponent) || o.RegExponent < 0:
		return fmt.Errorf("%w: RegExponent %v must not be negative", ErrOptions, o.RegExponent)
	case o.CGSteps < 0:
		return fmt.Errorf("%w: CGSteps %d must not be negative", ErrOptions, o.CGSteps)
	case o.Workers < 0:
		return fmt.Errorf("%w: Workers %d must not be negative", ErrOptions, o.Workers)
	}
	return nil
}

func (o Options) workers() int {
	if o.Workers > 0 {
		return o.Workers
	}
	return runtime.GOMAXPROCS(0)
}

// lambda returns the regularization weight of a row with n observed
// entries when the other side has m rows.
func (o Options) lambda(n, m int) float64 {
	return o.Reg * math.Pow(float64(n)+o.Unobserved*float64(m), o.RegExponent)
}
