"""Property tests of pzkit.streaming.estimate_catalog (if present): whatever the chunk size, and however many
times a run is killed and restarted, every input row gets exactly one output row, in order, with the PDF a
single in-memory call gives."""

import numpy as np
import pandas as pd
import pytest
from _pzfuzz import examples, outcome_of, record
from hypothesis import given
from hypothesis import strategies as st

import pzkit
from pzkit.exceptions import PzkitError

streaming = pytest.importorskip("pzkit.streaming")


@pytest.fixture(scope="module")
def model():
    from pzkit.testing import make_toy_catalog

    X, z = make_toy_catalog(200, random_state=0)
    cat = pd.DataFrame({f"mag_{b}_lsst": 22 + X[:, min(k, 4)] for k, b in enumerate("ugrizy")})
    cat["objid"] = np.arange(200) * 7 + 3
    feats = pzkit.PhotometryFeatures(nondetect="limit", mag_limits=dict(zip("ugrizy", [26.0] * 6)),
                                     id_column="objid")
    return pzkit.make_pipeline(feats, pzkit.make_estimator("knn_local_linear", n_neighbors=10)).fit(cat, z)


@examples(6)  # each run hashes the model and writes chunk files: about a second per call
@given(n=st.integers(1, 40), chunk=st.integers(1, 45), crashes=st.lists(st.integers(0, 5), max_size=3),
       nondetect=st.lists(st.tuples(st.integers(0, 59), st.integers(0, 5)), max_size=4), seed=st.integers(0, 99))
def test_rows_survive_chunking_and_restarts(model, tmp_path_factory, n, chunk, crashes, nondetect, seed):
    tmp = tmp_path_factory.mktemp("stream")
    rng = np.random.default_rng(seed)
    cat = pd.DataFrame({f"mag_{b}_lsst": rng.uniform(20, 25, n) for b in "ugrizy"})
    for i, j in nondetect:
        cat.iloc[i % n, j] = 99.0
    cat["objid"] = rng.permutation(10 * n)[:n]
    cat.to_parquet(tmp / "cat.parquet")
    out = tmp / "pdfs.hdf5"
    for k in crashes:  # a run killed after k chunks; the next call resumes
        ok, exc = outcome_of(lambda: streaming.estimate_catalog(model, str(tmp / "cat.parquet"), str(out),
                                                                storage="grid", chunk_size=chunk, progress=False,
                                                                fail_after=k), "streaming.estimate_catalog")
        if not ok:
            assert isinstance(exc, PzkitError)
            assert not out.exists(), "a crashed run left an output that looks complete"
        else:
            break
    if not out.exists():
        ok, res = outcome_of(lambda: streaming.estimate_catalog(model, str(tmp / "cat.parquet"), str(out),
                                                                storage="grid", chunk_size=chunk, progress=False),
                             "streaming.estimate_catalog")
        assert ok, f"resumed run failed: {res}"
    from pzkit.storage import read

    ens = read(str(out))
    assert ens.npdf == n, f"{n} rows in, {ens.npdf} out (chunk {chunk}, crashes {crashes})"
    ids = np.asarray(ens.ancil["objid"] if "objid" in ens.ancil else ens.ancil["id"]).ravel()
    np.testing.assert_array_equal(ids, cat["objid"].to_numpy(), err_msg="rows lost, duplicated or reordered")
    direct = model.estimate_pdf(cat)
    for key, value in direct.objdata.items():
        np.testing.assert_allclose(np.atleast_2d(ens.objdata[key]), np.atleast_2d(value), rtol=1e-7, atol=1e-10)
    record("streaming rows lost", "0")
