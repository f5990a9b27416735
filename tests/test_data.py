"""The CIFAR-10 loader: real data in, validated; bad files out, with one-line errors."""

from __future__ import annotations

import os
import pickle
import tarfile

import numpy as np
import pytest

from edgecifar import data
from edgecifar.errors import UserError

from .conftest import run_cli


def test_loads_real_cifar10(cifar):
    assert cifar.train.images.shape == (50000, 32, 32, 3) and cifar.train.images.dtype == np.uint8
    assert cifar.test.images.shape == (10000, 32, 32, 3) and cifar.test.labels.dtype == np.int64
    assert np.bincount(cifar.train.labels).tolist() == [5000] * 10
    assert np.bincount(cifar.test.labels).tolist() == [1000] * 10
    assert cifar.class_names == data.DEFAULT_CLASS_NAMES
    # Published CIFAR-10 train channel means (see shared/data/README.md): proves NHWC RGB decoding.
    means = cifar.train.images.reshape(-1, 3).mean(0) / 255
    np.testing.assert_allclose(means, [0.49139968, 0.48215841, 0.44653091], atol=1e-6)
    # First test labels of the original test_batch.
    assert cifar.test.labels[:10].tolist() == [3, 8, 8, 0, 6, 6, 1, 6, 3, 1]
    fp = cifar.fingerprint
    assert len(fp["train_sha256"]) == 64 and fp["train_count"] == 50000 and fp["test_count"] == 10000


def _copy_dataset(src, dst):
    dst.mkdir()
    for name in data.TRAIN_FILES + [data.TEST_FILE, data.META_FILE]:
        os.symlink(src / name, dst / name)
    return dst


def _write_batch(path, obj):
    path.unlink()
    path.write_bytes(pickle.dumps(obj, protocol=2))


def test_truncated_batch_is_one_line_error(data_dir, tmp_path):
    folder = _copy_dataset(data_dir, tmp_path / "cifar")
    raw = (data_dir / "data_batch_3").read_bytes()
    (folder / "data_batch_3").unlink()
    (folder / "data_batch_3").write_bytes(raw[: len(raw) // 2])
    with pytest.raises(UserError, match=r"data_batch_3: .*truncated"):
        data.load(folder)


def test_missing_batch_names_the_file(data_dir, tmp_path):
    folder = _copy_dataset(data_dir, tmp_path / "cifar")
    (folder / "data_batch_5").unlink()
    with pytest.raises(UserError, match=r"data_batch_5: missing"):
        data.load(folder)


def test_wrong_shape_is_rejected(data_dir, tmp_path):
    folder = _copy_dataset(data_dir, tmp_path / "cifar")
    bad = {b"data": np.zeros((10000, 1024), np.uint8), b"labels": [0] * 10000}
    _write_batch(folder / "test_batch", bad)
    with pytest.raises(UserError, match=r"test_batch: 'data' has shape \(10000, 1024\)"):
        data.load(folder, splits=("test",))


def test_label_out_of_range_is_rejected(data_dir, tmp_path):
    folder = _copy_dataset(data_dir, tmp_path / "cifar")
    bad = {b"data": np.zeros((10000, 3072), np.uint8), b"labels": [12] * 10000}
    _write_batch(folder / "test_batch", bad)
    with pytest.raises(UserError, match=r"labels outside 0..9"):
        data.load(folder, splits=("test",))


class Evil:
    """Unpickling this would run os.system: the loader must refuse the class, not execute it."""

    def __reduce__(self):
        return (os.system, ("touch pwned",))


def test_arbitrary_class_pickle_is_refused(data_dir, tmp_path):
    folder = _copy_dataset(data_dir, tmp_path / "cifar")
    _write_batch(folder / "test_batch", {b"data": Evil(), b"labels": []})
    with pytest.raises(UserError, match=r"test_batch: refusing to load (posix|os)\.system"):
        data.load(folder, splits=("test",))
    assert not (tmp_path / "pwned").exists() and not os.path.exists("pwned")


@pytest.mark.parametrize("damage", ["evil", "truncated"])
def test_bad_batches_give_one_line_cli_errors(data_dir, tmp_path, damage):
    """Through the CLI: exit 2, one line naming the file, no traceback, no run left behind."""
    folder = _copy_dataset(data_dir, tmp_path / "cifar")
    if damage == "evil":
        _write_batch(folder / "data_batch_1", {b"data": Evil(), b"labels": []})
    else:
        raw = (data_dir / "data_batch_1").read_bytes()
        (folder / "data_batch_1").unlink()
        (folder / "data_batch_1").write_bytes(raw[:1000])
    res = run_cli("train", "--limit", "100", "--data-dir", folder, "--runs-dir", tmp_path / "runs", cwd=tmp_path)
    assert res.returncode == 2
    err = res.stderr.strip().splitlines()
    assert len(err) == 1 and "Traceback" not in res.stderr
    assert "data_batch_1" in err[0]
    assert not (tmp_path / "pwned").exists()


class BadCodec:
    """An allowed global called with arguments that make it raise (LookupError): refused cleanly, nothing executed."""

    def __reduce__(self):
        import _codecs

        return (_codecs.encode, ("a", "no-such-codec"))


def test_crafted_pickle_raising_inside_an_allowed_global_is_one_line(data_dir, tmp_path):
    folder = _copy_dataset(data_dir, tmp_path / "cifar")
    _write_batch(folder / "test_batch", {b"data": BadCodec(), b"labels": []})
    with pytest.raises(UserError, match=r"test_batch: corrupt or truncated batch \(LookupError\)"):
        data.load(folder, splits=("test",))


def test_numpy2_protocol5_pickle_of_the_batch_loads(data_dir, tmp_path):
    """A batch re-saved by numpy >= 2 with pickle protocol 5 (frombuffer reconstruction) loads to the same pixels."""
    folder = _copy_dataset(data_dir, tmp_path / "cifar")
    with open(data_dir / data.TEST_FILE, "rb") as f:
        original = pickle.load(f, encoding="bytes")
    (folder / data.TEST_FILE).unlink()
    (folder / data.TEST_FILE).write_bytes(pickle.dumps(original, protocol=5))
    assert b"_frombuffer" in (folder / data.TEST_FILE).read_bytes() or np.lib.NumpyVersion(np.__version__) < "2.0.0"
    reloaded = data.load(folder, splits=("test",))
    assert reloaded.fingerprint["test_sha256"] == data.load(data_dir, splits=("test",)).fingerprint["test_sha256"]


def test_tar_archive_is_accepted(data_dir, tmp_path):
    archive = tmp_path / data.ARCHIVE
    with tarfile.open(archive, "w:gz", compresslevel=1) as tar:
        for name in [data.TEST_FILE, data.META_FILE]:
            tar.add(data_dir / name, arcname=f"{data.FOLDER}/{name}")
    ds = data.load(archive, splits=("test",))
    assert ds.test.images.shape == (10000, 32, 32, 3)
    # The folder holding the archive works too.
    assert data.load(tmp_path, splits=("test",)).fingerprint["test_sha256"] == ds.fingerprint["test_sha256"]


def test_lookup_order_env_and_errors(data_dir, tmp_path, monkeypatch):
    monkeypatch.setenv(data.ENV_VAR, str(data_dir))
    assert data.resolve(None)[1] == str(data_dir)
    with pytest.raises(UserError, match="--data-dir .* does not exist"):
        data.resolve(tmp_path / "nope")
    monkeypatch.delenv(data.ENV_VAR)
    monkeypatch.setenv("HOME", str(tmp_path))  # empty ~/.keras
    with pytest.raises(UserError, match="--data-dir PATH.*EDGECIFAR_DATA"):
        data.resolve(None, download=False)


def test_stratified_split_is_balanced_and_disjoint(cifar):
    train, val = data.train_val_split(cifar.train, 5000, seed=1)
    assert len(train) == 45000 and len(val) == 5000
    assert np.bincount(val.labels).tolist() == [500] * 10
    idx = data.stratified_indices(cifar.train.labels, 5000, seed=1)
    assert np.array_equal(idx, data.stratified_indices(cifar.train.labels, 5000, seed=1))
    assert len(np.unique(idx)) == 5000
