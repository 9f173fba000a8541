"""Streaming estimation: chunked reading of Parquet/HDF5/FITS, exact row accounting, atomic and resumable output."""

import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import qp

import pzkit
from pzkit.exceptions import ColumnError, InputError
from pzkit.storage import Storage
from pzkit.streaming import StreamingError, catalog_info, estimate_catalog, iter_chunks

N_ROWS = 6000


@pytest.fixture(scope="module")
def setup(tmp_path_factory, dc2):
    """A small kNN model on DC2 and the first N_ROWS validation rows as Parquet (row groups of 1,700 rows, so
    chunks straddle them), HDF5 (under a group, as RAIL writes it) and FITS."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    import tables_io
    from astropy.table import Table

    d = tmp_path_factory.mktemp("stream")
    train = dc2.train.iloc[:3000]
    model = pzkit.make_pipeline(dc2.features(id_column="id"),
                                pzkit.make_estimator("knn_local_linear", n_neighbors=30, nzbins=151))
    model.fit(train, train["redshift"])
    pzkit.save(model, d / "m.pzk")
    val = dc2.validation.iloc[:N_ROWS].reset_index(drop=True)
    cols = {c: val[c].to_numpy() for c in val.columns}
    pq.write_table(pa.table(cols), d / "cat.parquet", row_group_size=1700)
    tables_io.write({"photometry": cols}, str(d / "cat.hdf5"))
    Table(cols).write(d / "cat.fits")
    return d, model, val


def _read_back(path):
    ens = qp.read(str(path))
    return {k: np.ravel(v) for k, v in ens.ancil.items()}, {k: np.asarray(v) for k, v in ens.objdata.items()}


@pytest.mark.parametrize("fmt", ["parquet", "hdf5", "fits"])
def test_chunks_are_exact(setup, fmt):
    d, _, val = setup
    path = d / f"cat.{fmt}"
    assert catalog_info(path)[0] == N_ROWS
    seen = []
    for i, start, cols in iter_chunks(path, ["id", "mag_i_lsst"], 1000, start_chunk=2):
        assert start == i * 1000 and len(cols["id"]) == min(1000, N_ROWS - start)
        np.testing.assert_array_equal(cols["id"], val["id"].to_numpy()[start:start + 1000])
        seen.append(i)
    assert seen == [2, 3, 4, 5]


@pytest.mark.parametrize("fmt", ["parquet", "hdf5", "fits"])
def test_stream_matches_in_memory(setup, tmp_path, fmt):
    d, model, val = setup
    out = tmp_path / "pdfs.hdf5"
    res = estimate_catalog(d / "m.pzk", d / f"cat.{fmt}", out, storage="grid", chunk_size=1000, progress=False)
    assert res.n_rows == N_ROWS and res.n_chunks == 6 and res.n_resumed == 0
    assert not os.path.exists(str(out) + ".partial")
    ancil, data = _read_back(out)
    ref = model.estimate_pdf(val)
    np.testing.assert_array_equal(ancil["id"], val["id"].to_numpy())  # one row per input row, in order
    np.testing.assert_allclose(data["yvals"], ref.objdata["yvals"], rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(ancil["zmode"], np.ravel(ref.ancil["zmode"]))


def test_quantile_storage_and_parquet_output(setup, tmp_path):
    d, model, val = setup
    out = tmp_path / "pdfs.pq"
    res = estimate_catalog(model, d / "cat.parquet", out, storage="quantiles", chunk_size=2500, progress=False)
    assert [os.path.basename(p) for p in res.paths] == ["pdfsdata.pq", "pdfsancil.pq", "pdfsmeta.pq"]
    ens = qp.read(str(out))
    assert ens.npdf == N_ROWS
    expected = Storage("quantiles").encode(model.estimate_pdf(val))[0]["locs"]
    np.testing.assert_allclose(ens.objdata["locs"], expected, rtol=1e-6)
    np.testing.assert_array_equal(np.ravel(ens.ancil["id"]), val["id"].to_numpy())


def test_missing_columns_reported_before_any_work(setup, tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    d, _, val = setup
    bad = tmp_path / "bad.parquet"
    pq.write_table(pa.table({c: val[c].to_numpy() for c in val.columns if c != "mag_y_lsst"}), bad)
    out = tmp_path / "out.hdf5"
    with pytest.raises(ColumnError, match="mag_y_lsst"):
        estimate_catalog(d / "m.pzk", bad, out, progress=False)
    assert not os.path.exists(out) and not os.path.exists(str(out) + ".partial")


def test_no_overwrite_without_flag(setup, tmp_path):
    d, _, _ = setup
    out = tmp_path / "out.hdf5"
    out.write_bytes(b"precious")
    with pytest.raises(InputError, match="already exists"):
        estimate_catalog(d / "m.pzk", d / "cat.parquet", out, progress=False)
    assert out.read_bytes() == b"precious"
    estimate_catalog(d / "m.pzk", d / "cat.parquet", out, storage="point", overwrite=True, progress=False)
    assert len(pzkit.storage.read(out)) == N_ROWS


def test_bad_chunk_stops_with_clear_error_and_no_output(setup, tmp_path):
    """A non-detection in chunk 3 under nondetect='raise': the run stops naming the chunk, no output file;
    under the model's own 'limit' policy the same rows are estimated, never dropped."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    d, model, val = setup
    cols = {c: val[c].to_numpy().copy() for c in val.columns}
    for band, limit in pzkit.datasets.DC2_MAG_LIMITS.items():  # a clean catalog but for one row
        mags = cols[f"mag_{band}_lsst"]
        mags[(mags == 99) | ~np.isfinite(mags)] = limit
    cols["mag_g_lsst"][3500] = np.nan
    path = tmp_path / "nan.parquet"
    pq.write_table(pa.table(cols), path)
    strict = _with_policy(model, "raise")
    out = tmp_path / "out.hdf5"
    with pytest.raises(StreamingError, match=r"chunk 3 \(rows 3000–3999\).*non-detections"):
        estimate_catalog(strict, path, out, chunk_size=1000, progress=False)
    assert not os.path.exists(out)
    assert sorted(os.listdir(str(out) + ".partial")) == ["chunk-000000.npz", "chunk-000001.npz",
                                                         "chunk-000002.npz", "manifest.json"]
    res = estimate_catalog(model, path, tmp_path / "ok.hdf5", storage="point", chunk_size=1000, progress=False)
    table = pzkit.storage.read(res.output)
    assert len(table) == N_ROWS and np.isfinite(table["zmode"]).all()


def _with_policy(model, policy):
    import copy

    m = copy.deepcopy(model)
    m.steps[0][1].set_params(nondetect=policy)
    return m


def test_resume_after_failure_is_identical(setup, tmp_path):
    d, _, _ = setup
    ref = tmp_path / "ref.hdf5"
    estimate_catalog(d / "m.pzk", d / "cat.hdf5", ref, storage="quantiles", chunk_size=700, progress=False)
    out = tmp_path / "out.hdf5"
    with pytest.raises(StreamingError, match="simulated"):
        estimate_catalog(d / "m.pzk", d / "cat.hdf5", out, storage="quantiles", chunk_size=700, progress=False,
                         fail_after=4)
    assert not os.path.exists(out)
    with pytest.raises(StreamingError, match="different chunk_size"):
        estimate_catalog(d / "m.pzk", d / "cat.hdf5", out, storage="quantiles", chunk_size=800, progress=False)
    with pytest.warns(pzkit.exceptions.PzkitWarning, match="resuming: 4 of 9"):
        res = estimate_catalog(d / "m.pzk", d / "cat.hdf5", out, storage="quantiles", chunk_size=700,
                               progress=False)
    assert res.n_resumed == 4
    a, b = _read_back(ref), _read_back(out)
    for x, y in zip(a, b):
        assert x.keys() == y.keys()
        for k in x:
            np.testing.assert_array_equal(x[k], y[k])


def test_cli_estimate_quantiles(setup, tmp_path, capsys):
    from pzkit.cli import main

    d, _, val = setup
    out = tmp_path / "q.hdf5"
    args = ["estimate", "-m", str(d / "m.pzk"), "-i", str(d / "cat.parquet"), "-o", str(out), "--storage",
            "quantiles", "--chunk-size", "2000", "--quiet"]
    assert main(args) == 0
    assert "wrote 6000 objects (quantiles" in capsys.readouterr().err
    assert main(args) == 2
    assert "already exists" in capsys.readouterr().err
    assert main(args + ["--overwrite"]) == 0
    np.testing.assert_array_equal(np.ravel(qp.read(str(out)).ancil["id"]), val["id"].to_numpy())


_KILL_SCRIPT = """
import sys, pzkit.streaming as s
s.estimate_catalog(sys.argv[1], sys.argv[2], sys.argv[3], storage="quantiles", chunk_size=int(sys.argv[4]),
                   progress=False)
"""


def kill_and_resume(model, catalog, out, ref, chunk_size, kill_after_chunks, timeout=600):
    """Run the estimate in a subprocess, SIGKILL it once ``kill_after_chunks`` chunk files exist, rerun it in
    this process and compare with ``ref`` (an uninterrupted run's output). Returns a dict of counts."""
    proc = subprocess.Popen([sys.executable, "-c", _KILL_SCRIPT, str(model), str(catalog), str(out),
                             str(chunk_size)])
    parts = str(out) + ".partial"
    t0 = time.time()
    while time.time() - t0 < timeout:
        n_done = len([f for f in os.listdir(parts) if f.endswith(".npz")]) if os.path.isdir(parts) else 0
        if n_done >= kill_after_chunks or proc.poll() is not None:
            break
        time.sleep(0.05)
    assert proc.poll() is None, "the run finished before it could be killed"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not os.path.exists(out)
    killed_at = len([f for f in os.listdir(parts) if f.endswith(".npz")])
    res = estimate_catalog(model, catalog, out, storage="quantiles", chunk_size=chunk_size, progress=False)
    (ref_ancil, ref_data), (ancil, data) = _read_back(ref), _read_back(out)
    ids, ref_ids = ancil["id"], ref_ancil["id"]
    counts = {"n_rows": int(ref_ids.size), "n_out": int(ids.size), "chunks_done_at_kill": killed_at,
              "n_chunks": res.n_chunks, "n_resumed": res.n_resumed,
              "lost": int(np.setdiff1d(ref_ids, ids).size), "duplicated": int(ids.size - np.unique(ids).size),
              "identical": bool(np.array_equal(ids, ref_ids)
                                and all(np.array_equal(ancil[k], ref_ancil[k]) for k in ref_ancil)
                                and all(np.array_equal(data[k], ref_data[k]) for k in ref_data))}
    return counts


def test_kill9_mid_run_then_rerun(setup, tmp_path):
    d, _, _ = setup
    ref = tmp_path / "ref.hdf5"
    estimate_catalog(d / "m.pzk", d / "cat.parquet", ref, storage="quantiles", chunk_size=300, progress=False)
    with pytest.warns(pzkit.exceptions.PzkitWarning, match="resuming"):
        counts = kill_and_resume(d / "m.pzk", d / "cat.parquet", tmp_path / "out.hdf5", ref, 300, 6)
    assert 0 < counts["n_resumed"] < counts["n_chunks"]
    assert counts["lost"] == 0 and counts["duplicated"] == 0 and counts["n_out"] == N_ROWS
    assert counts["identical"]


# the model was fitted with id_column (a DataFrame with feature names); dropping it after the fit is this test's
# shortcut to a model without ids, and sklearn notes the missing names
@pytest.mark.filterwarnings("ignore:X does not have valid feature names")
def test_rows_without_ids_get_their_row_number(setup, tmp_path):
    import copy

    d, model, val = setup
    anonymous = copy.deepcopy(model)
    anonymous.steps[0][1].set_params(id_column=None)
    res = estimate_catalog(anonymous, d / "cat.fits", tmp_path / "a.hdf5", storage="point", chunk_size=1234,
                           progress=False)
    table = pzkit.storage.read(res.output)
    np.testing.assert_array_equal(table["row"].to_numpy(), np.arange(N_ROWS))
    res = estimate_catalog(anonymous, d / "cat.fits", tmp_path / "b.hdf5", storage="point", chunk_size=1234,
                           id_column="id", progress=False)
    np.testing.assert_array_equal(pzkit.storage.read(res.output)["id"].to_numpy(), val["id"].to_numpy())


@pytest.mark.parametrize("fail_on", ["chunk", "merge"])
def test_disk_full_leaves_no_complete_looking_output_and_resumes(setup, tmp_path, monkeypatch, fail_on):
    """ENOSPC while a chunk or the final file is written: a pzkit OutputError that says what happened, no
    output file; after space is freed the rerun resumes and equals an uninterrupted run."""
    import errno

    from pzkit import storage, streaming
    from pzkit.exceptions import OutputError

    d, model, val = setup
    clean = estimate_catalog(model, d / "cat.parquet", tmp_path / "clean.hdf5", storage="point",
                             chunk_size=1000, progress=False)
    real_write, real_open = streaming._write_atomic, storage.open_writer
    calls = {"n": 0}

    def full_disk_write(path, writer):
        calls["n"] += 1
        if fail_on == "chunk" and calls["n"] == 4:
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        return real_write(path, writer)

    def full_disk_open(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device", str(args[1][0]))

    monkeypatch.setattr(streaming, "_write_atomic", full_disk_write)
    if fail_on == "merge":
        monkeypatch.setattr(storage, "open_writer", full_disk_open)
    out = tmp_path / "out.hdf5"
    with pytest.raises(OutputError, match="No space left on device.*no output was written.*rerun to resume"):
        estimate_catalog(model, d / "cat.parquet", out, storage="point", chunk_size=1000, progress=False)
    assert not os.path.exists(out)
    assert not [f for f in os.listdir(tmp_path) if f.startswith("out.hdf5") and f != "out.hdf5.partial"]
    monkeypatch.setattr(streaming, "_write_atomic", real_write)
    monkeypatch.setattr(storage, "open_writer", real_open)
    res = estimate_catalog(model, d / "cat.parquet", out, storage="point", chunk_size=1000, progress=False)
    assert res.n_resumed > 0
    a, b = pzkit.storage.read(res.output), pzkit.storage.read(clean.output)
    for col in b.columns if hasattr(b, "columns") else b:
        np.testing.assert_array_equal(np.asarray(a[col]), np.asarray(b[col]))
