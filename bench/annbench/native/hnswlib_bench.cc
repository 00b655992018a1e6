// Measures hnswlib's C++ library (libhnswlib-dev) on the data written by
// annbench, like hnswlib_bench.py but compiled natively by annbench with
// g++ -O3 -march=native, so hnswlib gets the same vector instructions as
// our kernel.
//
// Usage: hnswlib_bench DIR M EF_CONSTRUCTION BUILD_THREADS K REPS EF[,EF...]
// Prints one JSON object per efSearch value. Queries run one at a time on
// one thread, timed with process CPU time; the best of REPS passes counts.

#include <hnswlib/hnswlib.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <fstream>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

// readNpy reads a 2-d .npy file of 4-byte elements as written by annbench.
template <typename T>
static std::vector<T> readNpy(const std::string &path, size_t &rows, size_t &cols) {
    std::ifstream f(path, std::ios::binary);
    char magic[10];
    f.read(magic, 10);
    if (!f || std::memcmp(magic, "\x93NUMPY\x01\x00", 8) != 0) {
        std::fprintf(stderr, "%s: not a version 1 .npy file\n", path.c_str());
        std::exit(1);
    }
    size_t hlen = (unsigned char)magic[8] | ((unsigned char)magic[9] << 8);
    std::string hdr(hlen, '\0');
    f.read(&hdr[0], hlen);
    size_t at = hdr.find("'shape': (");
    if (at == std::string::npos || std::sscanf(hdr.c_str() + at, "'shape': (%zu, %zu)", &rows, &cols) != 2) {
        std::fprintf(stderr, "%s: no 2-d shape in header\n", path.c_str());
        std::exit(1);
    }
    std::vector<T> data(rows * cols);
    f.read(reinterpret_cast<char *>(data.data()), data.size() * sizeof(T));
    if (!f) {
        std::fprintf(stderr, "%s: truncated\n", path.c_str());
        std::exit(1);
    }
    return data;
}

static double cpuSeconds() {
    timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static long rssBytes() {
    std::ifstream f("/proc/self/status");
    std::string line;
    while (std::getline(f, line)) {
        if (line.rfind("VmRSS:", 0) == 0) return std::atol(line.c_str() + 6) * 1024;
    }
    return 0;
}

int main(int argc, char **argv) {
    if (argc != 8) {
        std::fprintf(stderr, "usage: %s DIR M EFC THREADS K REPS EFS\n", argv[0]);
        return 2;
    }
    std::string dir = argv[1];
    size_t m = std::atoi(argv[2]), efc = std::atoi(argv[3]), k = std::atoi(argv[5]);
    int threads = std::atoi(argv[4]), reps = std::atoi(argv[6]);
    std::vector<size_t> efs;
    std::stringstream ss(argv[7]);
    for (std::string s; std::getline(ss, s, ',');) efs.push_back(std::stoul(s));

    size_t n, dim, nq, qdim, tq, tk;
    auto base = readNpy<float>(dir + "/base.npy", n, dim);
    auto queries = readNpy<float>(dir + "/queries.npy", nq, qdim);
    auto truth = readNpy<int32_t>(dir + "/truth.npy", tq, tk);

    long rss0 = rssBytes();
    auto wall0 = std::chrono::steady_clock::now();
    double cpu0 = cpuSeconds();
    hnswlib::InnerProductSpace space(dim);
    hnswlib::HierarchicalNSW<float> index(&space, n, m, efc, 1);
    std::atomic<size_t> next{0};
    std::vector<std::thread> pool;
    for (int t = 0; t < threads; t++) {
        pool.emplace_back([&] {
            for (size_t i; (i = next.fetch_add(1)) < n;) index.addPoint(&base[i * dim], i);
        });
    }
    for (auto &t : pool) t.join();
    double buildS = std::chrono::duration<double>(std::chrono::steady_clock::now() - wall0).count();
    double buildCPU = cpuSeconds() - cpu0;
    long mem = rssBytes() - rss0;

    for (size_t ef : efs) {
        index.setEf(ef);
        size_t hits = 0;
        for (size_t i = 0; i < nq; i++) {  // warm-up and recall
            auto res = index.searchKnn(&queries[i * dim], k);
            std::set<int32_t> want(&truth[i * tk], &truth[i * tk] + std::min(k, tk));
            for (; !res.empty(); res.pop()) hits += want.count((int32_t)res.top().second);
        }
        double best = 1e300;
        for (int r = 0; r < reps; r++) {
            double c0 = cpuSeconds();
            for (size_t i = 0; i < nq; i++) index.searchKnn(&queries[i * dim], k);
            best = std::min(best, cpuSeconds() - c0);
        }
        std::printf("{\"backend\": \"hnswlib C++ -march=native\", \"ef\": %zu, \"recall\": %.6f, \"qps_cpu\": %.1f, "
                    "\"build_s\": %.3f, \"build_cpu_s\": %.3f, \"mem_bytes\": %ld}\n",
                    ef, double(hits) / double(k * nq), nq / best, buildS, buildCPU, mem);
        std::fflush(stdout);
    }
    return 0;
}
