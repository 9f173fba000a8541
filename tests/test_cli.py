import subprocess
import sys

import numpy as np
import qp
import tables_io

from pzkit.cli import main


def test_help_lists_commands():
    out = subprocess.run([sys.executable, "-m", "pzkit.cli", "--help"], capture_output=True, text=True)
    assert out.returncode == 0
    for cmd in ("list", "fit", "estimate", "bench"):
        assert cmd in out.stdout


def test_list_shows_train_z(capsys):
    import sys

    torch_before = "torch" in sys.modules
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    assert "train_z" in out and "pzkit-train-z" in out and "pzkit_train_z:TrainZ" in out
    assert torch_before or "torch" not in sys.modules  # listing imports no plugin
    assert main(["list", "--tags"]) == 0
    line = next(row for row in capsys.readouterr().out.splitlines() if row.startswith("train_z"))
    assert " ok " in line and "photometry" in line


def test_fit_then_estimate_on_files(tmp_path, dc2, capsys):
    train = tmp_path / "train.hdf5"
    test = tmp_path / "test.hdf5"
    tables_io.write({k: dc2.train[k].to_numpy()[:800] for k in dc2.train}, str(train))
    tables_io.write({k: dc2.validation[k].to_numpy()[:300] for k in dc2.validation}, str(test))
    model = tmp_path / "m.pzk"
    out = tmp_path / "pdfs.hdf5"
    assert main(["fit", "train_z", "--train", str(train), "--nondetect", "limit", "--mag-limits", "dc2",
                 "--id-column", "id", "--param", "nzbins=151", "-o", str(model)]) == 0
    assert main(["estimate", "-m", str(model), "-i", str(test), "-o", str(out), "--chunk-size", "128",
                 "--quiet"]) == 0
    ens = qp.read(str(out))
    assert ens.npdf == 300
    np.testing.assert_array_equal(ens.ancil["id"], dc2.validation["id"].to_numpy()[:300])
    assert ens.metadata["bins"].size == 151


def test_cli_errors_are_clear(tmp_path, capsys):
    assert main(["fit", "train_z", "--dataset", "dc2", "-o", str(tmp_path / "m.pzk")]) == 2
    err = capsys.readouterr().err
    assert "non-detections" in err and "nondetect='limit'" in err
    assert main(["estimate", "-m", str(tmp_path / "missing.pzk"), "--dataset", "dc2", "-o", "x"]) == 2
    assert "cannot read model file" in capsys.readouterr().err
