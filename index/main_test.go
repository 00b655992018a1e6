package index

import (
	"fmt"
	"os"
	"slices"
	"sync"
	"testing"

	"go.uber.org/goleak"
)

// summary collects measured recalls. TestMain prints it to stderr after the
// run, so the numbers show without -v.
var summary struct {
	mu    sync.Mutex
	lines []string
}

func report(t *testing.T, format string, args ...any) {
	t.Helper()
	line := fmt.Sprintf(format, args...)
	t.Log(line)
	summary.mu.Lock()
	summary.lines = append(summary.lines, t.Name()+": "+line)
	summary.mu.Unlock()
}

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m, goleak.Cleanup(func(code int) {
		summary.mu.Lock()
		slices.Sort(summary.lines)
		for _, l := range summary.lines {
			fmt.Fprintln(os.Stderr, "index:", l)
		}
		summary.mu.Unlock()
		os.Exit(code)
	}))
}
