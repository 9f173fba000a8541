import threading

import numpy as np
import pytest

from pzkit.parallel import map_row_chunks, resolve_n_jobs


@pytest.mark.parametrize("n_jobs, expected", [(None, 1), (1, 1), (3, 3), (-1, 4), (-2, 3), (-9, 1)])
def test_resolve_n_jobs_follows_sklearn(monkeypatch, n_jobs, expected):
    monkeypatch.setattr("os.cpu_count", lambda: 4)
    assert resolve_n_jobs(n_jobs) == expected


def test_chunks_come_back_in_order_from_threads_with_one_job_each():
    X = np.arange(1000.0)[:, None]
    seen = []

    def func(chunk, jobs):
        seen.append((threading.get_ident(), jobs))
        return chunk[:, 0].copy()

    out = map_row_chunks(func, X, 7, n_jobs=3)
    np.testing.assert_array_equal(np.concatenate(out), X[:, 0])
    assert len(out) == 143 and {jobs for _, jobs in seen} == {1}
    assert threading.get_ident() not in {ident for ident, _ in seen}


def test_a_lone_chunk_runs_here_with_all_jobs():
    seen = []
    map_row_chunks(lambda chunk, jobs: seen.append((threading.get_ident(), jobs, chunk.shape[0])), np.ones((5, 2)), 10, -1)
    assert seen == [(threading.get_ident(), -1, 5)]
