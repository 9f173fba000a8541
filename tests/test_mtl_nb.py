import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="SKIPPED: torch not installed (extra 'torch')")

import pzkit  # noqa: E402
from pzkit.exceptions import InputError  # noqa: E402
from pzkit.testing import make_toy_catalog  # noqa: E402

pytest.importorskip("pzkit_mtl_nb", reason="SKIPPED: plugin mtl_nb not installed")
from pzkit_mtl_nb._nets import _MTLNet  # noqa: E402

FAST = dict(hidden=(32, 32), max_epochs=8, batch_size=64, lr_step=5)


def _toy(n=400, seed=0):
    X, z = make_toy_catalog(n, random_state=seed)
    centres = np.linspace(0.2, 2.4, 9)
    nb = 22.0 - 1.5 * np.exp(-0.5 * ((z[:, None] - centres[None, :]) / 0.15) ** 2)  # an emission-line-like bump
    return X, z, nb


def test_joint_loss_by_hand():
    net = _MTLNet(module=torch.nn.Linear, module__in_features=1, module__out_features=1,
                  criterion=torch.nn.CrossEntropyLoss, nb_weight=0.5)
    net.initialize()
    logits = torch.tensor([[2.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    nb_pred = torch.tensor([[1.0, 2.0], [0.0, 0.0], [3.0, 3.0]])
    # object 0: label bin 0, nb targets (1.5, 2.0); object 1: no label, nb (nan, 1.0); object 2: label bin 1, no nb
    y = torch.tensor([[0.0, 1.5, 2.0], [-1.0, float("nan"), 1.0], [1.0, float("nan"), float("nan")]])
    ce0 = -torch.log_softmax(logits[0], 0)[0]
    ce2 = -torch.log_softmax(logits[2], 0)[1]
    mae0 = (0.5 + 0.0) / 2
    mae1 = 1.0 / 1
    expected = (ce0 + ce2 + 0.5 * (mae0 + mae1)) / 3
    got = net.get_loss((logits, nb_pred), y)
    assert float(got) == pytest.approx(float(expected), rel=1e-6)


def test_fit_with_narrow_bands_and_unlabelled_objects():
    X, z, nb = _toy()
    y = z.copy()
    y[::3] = np.nan  # a third without spec-z: they train the narrow-band head only
    nb[1::4, 2] = np.nan  # missing bands are masked
    nb[2::5, 5] = 99.0
    est = pzkit.make_estimator("mtl_nb", random_state=0, **FAST).fit(X, y, nb=nb)
    assert est.n_nb_targets_ == 8
    ens = est.estimate_pdf(X[:50])
    assert ens.npdf == 50 and np.all(np.isfinite(ens.ancil["zmode"]))


def test_narrow_bands_are_refused_at_prediction():
    X, z, nb = _toy(200)
    est = pzkit.make_estimator("mtl_nb", random_state=0, **FAST).fit(X, z, nb=nb)
    with pytest.raises(InputError, match="nb was passed to predict"):
        est.predict(X, nb=nb)
    with pytest.raises(InputError, match="nb was passed to estimate_pdf"):
        est.estimate_pdf(X, nb=nb)


def test_bad_side_inputs_are_named():
    X, z, nb = _toy(200)
    est = pzkit.make_estimator("mtl_nb", **FAST)
    with pytest.raises(InputError, match=r"nb must be an array of shape \(n_samples=200"):
        est.fit(X, z, nb=nb[:-1])
    with pytest.raises(InputError, match="needs nb"):
        est.fit(X, z)
    with pytest.raises(InputError, match="needs z_photo"):
        pzkit.make_estimator("mtl_nb", variant="zs+NB+zPAUS", **FAST).fit(X, z, nb=nb)
    with pytest.raises(InputError, match="variant must be one of"):
        pzkit.make_estimator("mtl_nb", variant="nb-only", **FAST).fit(X, z, nb=nb)


def test_zpaus_labels_fill_missing_spec_z():
    X, z, nb = _toy(300)
    y = z.copy()
    y[:200] = np.nan
    est = pzkit.make_estimator("mtl_nb", variant="zs+zPAUS", random_state=0, **FAST)
    est.fit(X, y, z_photo=z + 0.001)
    # with the photo-z labels every object trains the redshift head: it learns beyond the 100 spec-z objects
    assert pzkit.metrics.sigma_nmad(z, est.predict(X)) < 0.2


def test_side_inputs_route_through_pipeline():
    import sklearn
    from sklearn.preprocessing import FunctionTransformer

    X, z, nb = _toy(300)
    with sklearn.config_context(enable_metadata_routing=True):
        est = pzkit.make_estimator("mtl_nb", random_state=0, **FAST).set_fit_request(nb=True, z_photo=False)
        pipe = pzkit.make_pipeline(FunctionTransformer(), est)
        pipe.fit(X, z, nb=nb)
        assert pipe[-1].n_nb_targets_ == 8
        assert pipe.estimate_pdf(X[:10]).npdf == 10
