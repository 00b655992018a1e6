package index

// Choosing between a graph search and an exact scan.
//
// A graph search with a filter walks through disallowed nodes and lets only
// allowed ones into the result set, so it computes about visitsPerEf*ef/p
// distances for an allowed fraction p (measured on clustered data: ~800
// distances at ef 64 unfiltered, ~5,400 at p = 0.1), each a random memory
// access worth about two sequential ones. An exact scan calls the filter
// once per row (~0.1 of a 32-64-dim dot product) and scores the allowed
// rows sequentially. Search scans when that is estimated cheaper, and
// always when p < minGraphFraction, where the sample is too small to trust.
// For 10k rows at ef 64 that means a scan below p ~ 0.35 and for every
// unfiltered search with ef above n/25; for 1M rows, below p ~ 0.02.

const (
	// filterSample is how many IDs are tested to estimate a filter's
	// allowed fraction; quickSample how many first, which settle the choice
	// for filters that allow most rows (they cost a cache miss each).
	filterSample = 256
	quickSample  = 32
	// minGraphFraction: filters allowing less than this estimated fraction
	// of rows are always served by an exact scan over the allowed rows.
	minGraphFraction = 0.02
	// visitsPerEf is the measured number of distance computations per
	// unit of ef of an unfiltered layer-0 search.
	visitsPerEf = 12.5
	// randomAccessCost is the cost of a graph visit in sequential dot
	// products; filterCost the cost of one filter call.
	randomAccessCost = 2.0
	filterCost       = 0.1
)

// preferScan reports whether an exact scan of n rows is expected to be
// cheaper than a graph search with candidate list ef under filter f. It
// also returns the estimated allowed fraction (1 for a nil filter).
// When the first quickSample IDs say the graph is cheaper even at half their
// allowed fraction, the rest of the sample is skipped.
func preferScan(f Filter, n, ef int) (bool, float64) {
	if f == nil {
		return scanCheaper(n, ef, 1, false), 1
	}
	if p := allowedFraction(f, n, quickSample); !scanCheaper(n, ef, p/2, true) {
		return false, p
	}
	p := allowedFraction(f, n, filterSample)
	if p < minGraphFraction {
		return true, p
	}
	return scanCheaper(n, ef, p, true), p
}

// scanCheaper compares the estimated costs of a scan and a graph search
// for allowed fraction p, with or without a filter to call per scanned row.
func scanCheaper(n, ef int, p float64, filtered bool) bool {
	if p <= 0 {
		return true
	}
	scanCost := float64(n)
	if filtered {
		scanCost *= p + filterCost
	}
	return scanCost < randomAccessCost*visitsPerEf*float64(ef)/p
}

// allowedFraction estimates the fraction of the n rows that f allows by
// testing sample IDs spread over [0, n) by a golden-ratio (Weyl) sequence,
// which is deterministic and does not alias with ID strides such as id%k
// filters. For n <= sample every ID is tested.
func allowedFraction(f Filter, n, sample int) float64 {
	if n <= 0 {
		return 0
	}
	allowed := 0
	if n <= sample {
		for id := range n {
			if f(int32(id)) {
				allowed++
			}
		}
		return float64(allowed) / float64(n)
	}
	const phi = 0.6180339887498949 // (sqrt(5)-1)/2
	x := 0.5
	for range sample {
		x += phi
		if x >= 1 {
			x--
		}
		if f(int32(x * float64(n))) {
			allowed++
		}
	}
	return float64(allowed) / float64(sample)
}
