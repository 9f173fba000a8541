"""Row-chunked evaluation in threads, shared by the catalog plugins.

Estimation of a large catalog is a map over row chunks. The heavy parts of the classical plugins (tree
traversal in sklearn and scipy, numpy, LAPACK, the FFT) release the GIL, so threads give the speed-up of
processes without copying the model or the chunk. Each chunk runs single-threaded inside (``n_jobs=1`` is
passed down, and BLAS/OpenMP pools are limited to one thread while the chunks run), so two levels of
parallelism never compete for the cores.
"""

import os

__all__ = ["resolve_n_jobs", "map_row_chunks"]


def resolve_n_jobs(n_jobs):
    """Threads for ``n_jobs`` as in scikit-learn: None → 1, −1 → all cores, −2 → all but one, ..."""
    if n_jobs is None:
        return 1
    n_jobs = int(n_jobs)
    if n_jobs < 0:
        n_jobs = max((os.cpu_count() or 1) + 1 + n_jobs, 1)
    return max(n_jobs, 1)


def map_row_chunks(func, X, chunk_size, n_jobs):
    """``[func(X[i:i + chunk_size], jobs) for each chunk]``, in order.

    With one thread (or one chunk) the chunks run one after the other and ``func`` gets ``jobs = n_jobs``
    (a lone chunk may parallelise inside); otherwise they run in ``n_jobs`` threads and ``func`` gets
    ``jobs = 1``. ``func`` must give the same result whatever ``jobs`` is, so that output never depends on
    the thread count.
    """
    starts = range(0, X.shape[0], chunk_size)
    n_threads = resolve_n_jobs(n_jobs)
    if n_threads <= 1 or len(starts) <= 1:
        return [func(X[i:i + chunk_size], n_jobs) for i in starts]
    from concurrent.futures import ThreadPoolExecutor

    from threadpoolctl import threadpool_limits

    # BLAS/OpenMP pools down to one thread while our threads run: otherwise every chunk's matrix product
    # starts its own pool on the same cores (the random forest's kernel product ran no faster on two
    # threads than on one until this was set)
    with threadpool_limits(1), ThreadPoolExecutor(max_workers=min(n_threads, len(starts))) as pool:
        return list(pool.map(lambda i: func(X[i:i + chunk_size], 1), starts))
