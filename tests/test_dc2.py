import numpy as np
import qp

import pzkit
from pzkit.datasets import DC2_MAG_LIMITS


def test_dc2_sizes_and_columns(dc2):
    assert len(dc2.train) == 10_225 and len(dc2.validation) == 20_449
    for band in "ugrizy":
        assert f"mag_{band}_lsst" in dc2.train and f"mag_err_{band}_lsst" in dc2.train
    assert dc2.train["redshift"].between(0, 3).all()
    assert (dc2.train["mag_u_lsst"] == 99).sum() > 0  # non-detections are really there


def test_dc2_round_trip(dc2, tmp_path):
    """PhotometryFeatures -> train_z -> estimate_pdf -> write_to -> qp.read gives the same PDFs."""
    feats = pzkit.PhotometryFeatures(bands="ugrizy", nondetect="limit", mag_limits=DC2_MAG_LIMITS,
                                     id_column="id")
    pipe = pzkit.make_pipeline(feats, pzkit.make_estimator("train_z"))
    pipe.fit(dc2.train, dc2.train["redshift"])
    ens = pipe.estimate_pdf(dc2.validation)
    assert ens.npdf == 20_449
    path = tmp_path / "x.hdf5"
    ens.write_to(str(path))
    back = qp.read(str(path))
    assert back.npdf == ens.npdf
    # qp.read normalises again with its own arithmetic, which may move the last bit (pzkit.pdf)
    np.testing.assert_allclose(back.objdata["pdfs"], ens.objdata["pdfs"], rtol=1e-15, atol=0)
    np.testing.assert_array_equal(back.metadata["bins"], ens.metadata["bins"])
    for key in ("zmode", "zmedian", "zmean", "zstd", "id"):
        np.testing.assert_array_equal(back.ancil[key], ens.ancil[key])
    z = np.linspace(0, 3, 50)
    np.testing.assert_allclose(back.pdf(z)[:5], ens.pdf(z)[:5])
    # the training n(z): its median sits near the training sample's median
    assert abs(np.median(ens.ancil["zmedian"]) - np.median(dc2.train["redshift"])) < 0.02
