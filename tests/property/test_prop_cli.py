"""Property tests of the command line: any argument list ends with exit code 0 and a usable output, or with
exit code 2 and a one-line 'pzkit <command>: error: ...' (argparse's usage errors also exit 2); never a
traceback."""

import contextlib
import io
import os

import numpy as np
import pandas as pd
import pytest
from _pzfuzz import examples, record
from hypothesis import given
from hypothesis import strategies as st

import pzkit
from pzkit.cli import main


def _run(argv):
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            rc = main(argv)
        except SystemExit as exc:  # argparse: bad usage
            rc = exc.code
    record(f"cli {argv[0]}", "ok" if rc == 0 else f"exit {rc}")
    return rc, out.getvalue(), err.getvalue()


def _assert_clean_failure(rc, err, command):
    assert rc == 2, f"exit code {rc}: {err[-2000:]}"
    assert "Traceback" not in err
    assert f"pzkit {command}: error:" in err or "usage:" in err, err[-2000:]


@st.composite
def catalogs(draw):
    n = draw(st.integers(0, 30))
    rng = np.random.default_rng(draw(st.integers(0, 2**31)))
    z = rng.uniform(0.05, 2.5, n)
    cols = {f"mag_{b}_lsst": 24 - 2 * np.sin(z * (k + 1)) + rng.normal(0, 0.05, n) for k, b in enumerate("ugrizy")}
    cols["redshift"] = z
    cols["id"] = np.arange(n)
    clean = pd.DataFrame(cols).iloc[: max(n, 0)].copy()
    for _ in range(draw(st.integers(0, 2))):
        if n:
            col = draw(st.sampled_from(sorted(cols)))
            cols[col] = cols[col].astype(np.float64)
            cols[col][draw(st.integers(0, n - 1))] = draw(st.sampled_from([np.nan, 99.0, np.inf, -99.0, 1e30]))
    if draw(st.booleans()):
        cols.pop(draw(st.sampled_from(sorted(cols))))
    return clean, pd.DataFrame(cols)


PARAMS = st.lists(st.sampled_from(["n_neighbors=5", "n_neighbors=-1", "n_neighbors=abc", "zmax=2.0", "zmax=0.1",
                                   "nzbins=1", "nzbins=51", "foo=1", "point_estimate=mean", "point_estimate=best",
                                   "n_estimators=3", "novalue", "zmin=[1,2]"]), max_size=2)


@examples(40)
@given(cat=catalogs(), estimator=st.sampled_from(["train_z", "knn_local_linear", "random_forest", "nope"]),
       params=PARAMS, fmt=st.sampled_from([".parquet", ".hdf5", ".txt"]),
       nondetect=st.sampled_from([None, "raise", "limit", "nan", "ignore"]),
       limits=st.sampled_from([None, "dc2", "u=25,g=26", "u=x", ""]), id_column=st.sampled_from([None, "id", "zz"]),
       clean=st.booleans())
def test_fit_command(tmp_path_factory, cat, estimator, params, fmt, nondetect, limits, id_column, clean):
    tmp = tmp_path_factory.mktemp("cli")
    clean_cat, cat = cat
    if clean:
        cat = clean_cat
    path = tmp / f"train{fmt}"
    if clean:
        fmt = ".parquet"
        path = tmp / "train.parquet"
    if fmt == ".parquet":
        cat.to_parquet(path)
    elif fmt == ".hdf5":
        import tables_io

        tables_io.write(cat, str(path))
    else:
        path.write_text("not a catalog")
    argv = ["fit", estimator, "--train", str(path), "-o", str(tmp / "out" / "m.pzk")]
    for p in params:
        argv += ["--param", p]
    if nondetect:
        argv += ["--nondetect", nondetect]
    if limits is not None:
        argv += ["--mag-limits", limits]
    if id_column:
        argv += ["--id-column", id_column]
    if clean:  # half the cases: a valid command line, so the success path is exercised as much as the errors
        argv = ["fit", "train_z" if estimator == "nope" else estimator, "--train", str(path), "-o",
                str(tmp / "out" / "m.pzk"), "--nondetect", "limit", "--mag-limits", "dc2"]
        nondetect = "limit"
    rc, _, err = _run(argv)
    if rc == 0:
        model = pzkit.load(tmp / "out" / "m.pzk")
        feats = model.steps[0][1]
        X = cat.iloc[:3]
        assert np.all(np.isfinite(model.predict(X))) if len(X) else True
        assert feats.nondetect == (nondetect or "raise")
    else:
        _assert_clean_failure(rc, err, "fit")
        assert not (tmp / "out" / "m.pzk").exists()


@pytest.fixture(scope="module")
def model_path(tmp_path_factory):
    from pzkit.testing import make_toy_catalog

    tmp = tmp_path_factory.mktemp("model")
    X, z = make_toy_catalog(200, random_state=0)
    cat = pd.DataFrame({f"mag_{b}_lsst": 22 + X[:, min(k, 4)] for k, b in enumerate("ugrizy")})
    cat["redshift"] = z
    cat.to_parquet(tmp / "train.parquet")
    assert main(["fit", "train_z", "--train", str(tmp / "train.parquet"), "-o", str(tmp / "m.pzk")]) == 0
    return tmp / "m.pzk", cat


@examples(25)
@given(data=st.data(), chunk=st.sampled_from(["1", "7", "1000", "0", "-3", "x"]),
       model_kind=st.sampled_from(["good", "missing", "garbage"]), n=st.integers(0, 20))
def test_estimate_command(model_path, tmp_path_factory, data, chunk, model_kind, n):
    good, cat = model_path
    tmp = tmp_path_factory.mktemp("est")
    valid = data.draw(st.booleans())
    if valid:  # half the cases: a valid call
        chunk, model_kind, n = data.draw(st.sampled_from(["1", "7", "1000"])), "good", max(n, 1)
    model = {"good": good, "missing": tmp / "nope.pzk", "garbage": tmp / "garbage.pzk"}[model_kind]
    if model_kind == "garbage":
        model.write_bytes(os.urandom(100))
    test = cat.iloc[:n].drop(columns="redshift").copy()
    if n and not valid and data.draw(st.booleans()):
        test.iloc[data.draw(st.integers(0, n - 1)), 0] = data.draw(st.sampled_from([np.nan, 99.0, -99.0]))
    test.to_parquet(tmp / "test.parquet")
    out = tmp / "pdfs.hdf5"
    rc, _, err = _run(["estimate", "-m", str(model), "-i", str(tmp / "test.parquet"), "-o", str(out),
                       "--chunk-size", chunk, "--quiet"])
    if rc == 0:
        import qp

        ens = qp.read(str(out))
        assert ens.npdf == n, f"{n} rows in, {ens.npdf} PDFs out"
    else:
        _assert_clean_failure(rc, err, "estimate")
