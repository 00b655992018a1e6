//go:build race

package index

// raceEnabled reports whether the tests run under the race detector, which
// makes the graph build about 20x slower; the acceptance suite then uses a
// smaller catalog so the package stays within its time budget.
const raceEnabled = true
