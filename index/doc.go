// Package index implements top-K maximum-inner-product retrieval over a fixed
// matrix of item vectors.
//
// Three backends implement [Index] and are selected with [Options.Kind]:
//
//   - [Exact] scans every row; it is the ground truth and the fallback for
//     very selective filters.
//   - [HNSW] is our own Hierarchical Navigable Small World graph (Malkov and
//     Yashunin) using negative inner product as the distance, so it works on
//     raw, non-normalized embeddings such as those produced by ALS. A search
//     walks the graph with an 8-bit copy of the vectors (a quarter of their
//     memory more at 64 dimensions) and scores its best candidates again from
//     the vectors, so results and scores are exact.
//   - [Coder] wraps github.com/coder/hnsw v0.6.1 for comparison.
//
// All backends apply a [Filter] during retrieval rather than afterwards, so
// a filtered search still returns k allowed items when k exist. Every
// backend is immutable after construction and safe for concurrent Search.
//
// A built [HNSW] graph can be saved with [HNSW.WriteTo] and loaded over the
// same vectors with [ReadHNSW], which is much faster than building it and
// refuses corrupt, truncated or mismatched input with an error.
package index
