"""FAISS: search time and recall@10 against catalogue size for Flat, IVF and HNSW (inner product).

Vectors are embedding-like, not uniform noise: unit vectors of the embedder's dimension in a two-level
mixture — n^¼ "categories", √n "products" around them, images around the products with noise twice the
signal (so clusters overlap; measured: IVF nprobe=1 recall@10 ≈ 0.75, a conservative case) — and
queries drawn from the same mixture. Ground truth is exact search (IndexFlatIP). Each index is built
with the indexer's own `make_faiss_index`; searches go in calls of `batch` queries with k = the service's
neighbours per box, as one /identify request does, with OpenMP at 1 thread and at one per core. IVF gets
nlist ≈ √n (trained on at most 64 points per list, 10 k-means iterations) and is measured at several
nprobe; HNSW32 at several efSearch. A combination whose build would exceed the time budget (extrapolated
from the previous size) is skipped and reported as such.
"""

from __future__ import annotations

import math
import os
import time
from typing import Any

import faiss
import numpy as np

from benchmarks.report import BenchReport, Plot, percentile
from indexer.build import make_faiss_index

NAME = "faiss"
RECALL_AT = 10
TARGET_RECALL = 0.95
IVF_NPROBE = (1, 8, 32)
HNSW_EF_SEARCH = (16, 64)
#: Exact search is kept while one call costs at most this (noise next to the models' ~100 ms per frame).
FLAT_ENOUGH_MS = 1.0


def default_sizes(max_size: int) -> list[int]:
    """1e3, 1e4, … up to max_size (inclusive when it is not a power of ten)."""
    sizes = [10**e for e in range(3, 8) if 10**e <= max_size]
    if max_size not in sizes and max_size > 0:
        sizes.append(max_size)
    return sizes


NOISE = 2.0  # image noise norm relative to its unit product centre


def _around(centres: np.ndarray, n: int, noise: float, rng: np.random.Generator) -> np.ndarray:
    """`n` unit vectors, each a random centre plus Gaussian noise of norm ≈ `noise`."""
    dim = centres.shape[1]
    out = np.empty((n, dim), dtype=np.float32)
    for start in range(0, n, 100_000):
        stop = min(n, start + 100_000)
        which = rng.integers(0, len(centres), stop - start)
        out[start:stop] = centres[which] + rng.standard_normal((stop - start, dim), dtype=np.float32) * (
            noise / math.sqrt(dim))
    faiss.normalize_L2(out)
    return out


def product_centres(n: int, dim: int, rng: np.random.Generator) -> np.ndarray:
    """√n product centres around n^¼ category centres (unit vectors)."""
    categories = rng.standard_normal((max(1, round(n ** 0.25)), dim), dtype=np.float32)
    faiss.normalize_L2(categories)
    return _around(categories, max(1, round(math.sqrt(n))), 1.0, rng)


def embedding_like(n: int, dim: int, rng: np.random.Generator, centres: np.ndarray) -> np.ndarray:
    """`n` image vectors around the product centres."""
    return _around(centres, n, NOISE, rng)


def nlist_for(n: int) -> int:
    """A power of two near √n, with at least 39 training points per list."""
    nlist = int(2 ** round(math.log2(max(1.0, math.sqrt(n)))))
    while nlist > 1 and n / nlist < 39:
        nlist //= 2
    return max(1, nlist)


def _build(factory: str, vectors: np.ndarray) -> Any:
    if factory.startswith("IVF"):  # cheaper training than faiss's defaults; recorded in the report
        index = faiss.index_factory(vectors.shape[1], factory, faiss.METRIC_INNER_PRODUCT)
        ivf = faiss.extract_index_ivf(index)
        ivf.cp.niter = 10
        ivf.cp.max_points_per_centroid = 64
        index.train(vectors)
        index.add(vectors)
        return index
    return make_faiss_index(vectors, factory)


def _set_param(index: Any, name: str | None, value: int | None) -> None:
    if value is None:
        return
    if name == "nprobe":
        faiss.extract_index_ivf(index).nprobe = value
    elif name == "efSearch":
        index.hnsw.efSearch = value


def _measure(index: faiss.Index, queries: np.ndarray, truth: np.ndarray, batch: int, k: int) -> dict[str, Any]:
    index.search(queries[:batch], k)  # warm-up: wakes OpenMP threads, touches the memory
    times, found = [], []
    for start in range(0, len(queries), batch):
        chunk = queries[start : start + batch]
        began = time.perf_counter()
        _, rows = index.search(chunk, k)
        times.append((time.perf_counter() - began) * 1000)
        found.append(rows[:, :RECALL_AT])
    rows = np.concatenate(found)
    recall = float(np.mean([len(set(a) & set(b)) / RECALL_AT for a, b in zip(rows, truth, strict=True)]))
    return {"search_ms_p50": percentile(times, 50), "search_ms_p95": percentile(times, 95),
            "us_per_query": round(float(np.sum(times)) * 1000 / len(queries), 1), "recall_at_10": round(recall, 4)}


def run(max_size: int = 1_000_000, dim: int = 256, queries: int = 200, batch: int = 8, k: int = 20,
        build_budget_s: float = 90.0, seed: int = 0, sizes: list[int] | None = None) -> BenchReport:
    rng = np.random.default_rng(seed)
    sizes = sizes or default_sizes(max_size)
    default_threads = faiss.omp_get_max_threads()  # restored afterwards (the service may have set it)
    threads = tuple(sorted({1, os.cpu_count() or 1}))
    rows: list[dict[str, Any]] = []
    notes: list[str] = []
    last_build: dict[str, tuple[int, float]] = {}
    for n in sizes:
        centres = product_centres(n, dim, rng)
        base = embedding_like(n, dim, rng, centres)
        query = embedding_like(queries, dim, rng, centres)
        exact = faiss.IndexFlatIP(dim)
        exact.add(base)
        _, truth = exact.search(query, RECALL_AT)
        del exact
        factories: list[tuple[str, str | None, tuple[int | None, ...]]] = [
            ("Flat", None, (None,)),
            (f"IVF{nlist_for(n)},Flat", "nprobe", IVF_NPROBE),
            ("HNSW32", "efSearch", HNSW_EF_SEARCH),
        ]
        for factory, param, values in factories:
            family = factory.split(",")[0].rstrip("0123456789")
            if family in last_build:  # extrapolate (n log n) from the previous size's build
                prev_n, prev_s = last_build[family]
                estimate = prev_s * (n / prev_n) * math.log(n) / math.log(max(prev_n, 2))
                if estimate > build_budget_s:
                    notes.append(f"{factory} at n={n:,} skipped: estimated build {estimate:.0f} s > budget "
                                  f"{build_budget_s:.0f} s (BENCH_FAISS_BUDGET)")
                    continue
            began = time.perf_counter()
            index = _build(factory, base)
            build_s = time.perf_counter() - began
            last_build[family] = (n, build_s)
            for value in values:
                _set_param(index, param, value)
                for t in threads:
                    faiss.omp_set_num_threads(t)
                    label = f"{family} {param}={value}" if param else family
                    row = {"n": n, "factory": factory, "family": family, "param": f"{param}={value}" if param else "",
                           "threads": t, "config": f"{label} t={t}", "build_s": round(build_s, 2)}
                    row.update(_measure(index, query, truth, batch, k))
                    rows.append(row)
                    print(f"  faiss n={n:,} {factory} {row['param']} threads={t}: {row['search_ms_p50']:.3f} ms/call, "
                          f"recall@10 {row['recall_at_10']:.3f}", flush=True)
                faiss.omp_set_num_threads(default_threads)
            del index
        del base
    return BenchReport(
        name=NAME,
        title="FAISS search time and recall@10 against catalogue size (inner product)",
        columns=["n", "factory", "param", "threads", "build_s", "search_ms_p50", "search_ms_p95", "us_per_query",
                 "recall_at_10"],
        rows=rows,
        params={"dim": dim, "queries": queries, "batch_per_search_call": batch, "k": k, "sizes": sizes,
                "faiss_threads": list(threads), "build_budget_s": build_budget_s, "seed": seed,
                "ivf_training": "niter=10, max_points_per_centroid=64", "ivf_nprobe": list(IVF_NPROBE),
                "hnsw_ef_search": list(HNSW_EF_SEARCH),
                "vectors": f"two-level mixture: n^0.25 categories, sqrt(n) products, image noise {NOISE}x"},
        summary={"recommendation": recommend(rows), "target_recall_at_10": TARGET_RECALL},
        notes=notes + [("Recommendation per size: exact Flat while its p50 per call is ≤ 1 ms or within 2× of the "
                        "fastest; else the fastest configuration (p50 ms per search call) with "
                       f"recall@10 ≥ {TARGET_RECALL}. IVF's nprobe and HNSW's efSearch are search-time settings.")],
        plots=[Plot(x="n", y="search_ms_p50", series="config", logx=True, logy=True, title="ms per search call"),
               Plot(x="n", y="recall_at_10", series="config", logx=True, title="recall@10")],
    )


def recommend(rows: list[dict[str, Any]]) -> dict[str, str]:
    """Per size: exact Flat while it is cheap (≤ FLAT_ENOUGH_MS per call, or within 2× of the fastest),
    else the fastest configuration that reaches the target recall."""
    best: dict[str, str] = {}
    for n in sorted({r["n"] for r in rows}):
        good = [r for r in rows if r["n"] == n and r["recall_at_10"] >= TARGET_RECALL]
        if not good:
            continue
        pick = min(good, key=lambda r: r["search_ms_p50"])
        flat = min((r for r in good if r["factory"] == "Flat"), key=lambda r: r["search_ms_p50"], default=None)
        flat_fast = flat is not None and (
            flat["search_ms_p50"] <= FLAT_ENOUGH_MS or flat["search_ms_p50"] <= 2 * pick["search_ms_p50"]
        )
        if flat is not None and flat_fast:
            pick = flat
        best[str(n)] = f"{pick['factory']} {pick['param']} (OpenMP threads {pick['threads']})".replace("  ", " ")
    return best
