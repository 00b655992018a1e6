"""Measures hnswlib on the data written by annbench (see main.go).

Usage: python3 hnswlib_bench.py DIR M EF_CONSTRUCTION BUILD_THREADS K REPS EF[,EF...]

DIR holds base.npy (n x dim float32), queries.npy (nq x dim float32) and
truth.npy (nq x K int32, exact top K by inner product). Prints one JSON object
per efSearch value on stdout. Queries run as one knn_query batch with
num_threads=1, timed with process CPU time; the best of REPS passes counts.
"""

import importlib.metadata
import json
import os
import sys
import time

import hnswlib
import numpy as np


def rss_bytes():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def main():
    d, m, efc, threads, k, reps = sys.argv[1], *map(int, sys.argv[2:7])
    efs = [int(x) for x in sys.argv[7].split(",")]
    base = np.load(os.path.join(d, "base.npy"))
    queries = np.load(os.path.join(d, "queries.npy"))
    truth = np.load(os.path.join(d, "truth.npy"))
    n, dim = base.shape

    rss0 = rss_bytes()
    wall0, cpu0 = time.perf_counter(), time.process_time()
    index = hnswlib.Index(space="ip", dim=dim)
    index.init_index(max_elements=n, ef_construction=efc, M=m, random_seed=1)
    index.add_items(base, np.arange(n), num_threads=threads)
    build_s = time.perf_counter() - wall0
    build_cpu = time.process_time() - cpu0
    mem = rss_bytes() - rss0

    truth_sets = [set(row[:k].tolist()) for row in truth]
    for ef in efs:
        index.set_ef(ef)
        labels, _ = index.knn_query(queries, k=k, num_threads=1)  # warm-up
        hits = sum(len(truth_sets[i] & set(labels[i].tolist())) for i in range(len(queries)))
        best = float("inf")
        for _ in range(reps):
            c0 = time.process_time()
            index.knn_query(queries, k=k, num_threads=1)
            best = min(best, time.process_time() - c0)
        print(json.dumps({
            "backend": "hnswlib " + importlib.metadata.version("hnswlib"),
            "ef": ef,
            "recall": hits / (k * len(queries)),
            "qps_cpu": len(queries) / best,
            "build_s": build_s,
            "build_cpu_s": build_cpu,
            "mem_bytes": mem,
        }), flush=True)


if __name__ == "__main__":
    main()
