"""pzkit.distributed: estimate_pdf over dask.dataframe partitions, on a real distributed.LocalCluster."""

import os
import pickle

import numpy as np
import pytest

import pzkit

dask = pytest.importorskip("dask")
dd = pytest.importorskip("dask.dataframe")
distributed = pytest.importorskip("distributed")

import pzkit.distributed as pzd  # noqa: E402
from pzkit.storage import Storage  # noqa: E402


@pytest.fixture(scope="module")
def model_and_data(dc2):
    model = pzkit.make_pipeline(dc2.features(id_column="id"),
                                pzkit.make_estimator("knn_local_linear", n_neighbors=30, nzbins=151))
    model.fit(dc2.train.iloc[:3000], dc2.train["redshift"].iloc[:3000])
    return model, dc2.validation.iloc[:4000].reset_index(drop=True)


def test_model_enters_the_graph_once(model_and_data):
    model, val = model_and_data
    size = len(pickle.dumps(model))
    graphs = {}
    for nparts in (2, 12):
        out = pzd.estimate_partitions(model, dd.from_pandas(val, npartitions=nparts))
        graphs[nparts] = len(pickle.dumps(dict(out.__dask_graph__())))
    # ten more partitions must not add ten more copies of the model
    assert graphs[12] - graphs[2] < 0.5 * size


def test_local_cluster_two_workers_matches_in_memory(model_and_data, tmp_path):
    model, val = model_and_data
    path = tmp_path / "cat.parquet"
    val.to_parquet(path, row_group_size=700)
    ddf = dd.read_parquet(path, columns=pzd.required_columns(model), split_row_groups=True)
    with dask.config.set(pzd.worker_config()), \
            distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cl, \
            distributed.Client(cl) as client:
        out = pzd.estimate_partitions(model, ddf, storage="quantiles").compute()
        environ = client.run(lambda: os.environ.get("MALLOC_MMAP_THRESHOLD_"))
    # the workers got the glibc setting that keeps NumPy temporaries off fresh mmaps
    assert sorted(environ.values()) == [pzd.WORKER_ENVIRON["MALLOC_MMAP_THRESHOLD_"]] * 2
    assert len(out) == len(val)
    np.testing.assert_array_equal(out["id"].to_numpy(), val["id"].to_numpy())
    ens = pzd.to_ensemble(out, "quantiles")
    ref = Storage("quantiles").encode(model.estimate_pdf(val))[0]["locs"]
    np.testing.assert_array_equal(ens.objdata["locs"].astype(np.float32), ref)


def test_missing_column_is_reported(model_and_data):
    model, val = model_and_data
    with pytest.raises(pzkit.ColumnError, match="mag_u_lsst"):
        pzd.estimate_partitions(model, dd.from_pandas(val.drop(columns="mag_u_lsst"), npartitions=2))
