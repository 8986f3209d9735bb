"""Embedded data sets: shapes, splits, normalisation, determinism, the MNIST-1D cache,
CIFAR-10 reading from local files, and that nothing touches the network."""

from __future__ import annotations

import dataclasses
import fcntl
import functools
import os
import pickle
import random
import re
import socket
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from optlab.tasks import datasets as ds
from optlab.tasks.datasets import DATASETS, Dataset, load_dataset, random_images, split_indices

EXPECTED = {  # name: (pool size = train + val, test size, input shape)
    "mnist1d": (4000, 1000, (40,)),
    "digits": (1797 - 359, 359, (8, 8, 1)),
    "mnist5k": (4000, 1000, (28, 28, 1)),
}
LOCAL = sorted(EXPECTED)


@pytest.fixture(autouse=True)
def _isolated_env(tmp_path, monkeypatch):
    """Never touch the user's cache or a real CIFAR-10 copy."""
    monkeypatch.setenv("OPTLAB_CACHE", str(tmp_path / "default-cache"))
    monkeypatch.delenv(ds.CIFAR10_ENV, raising=False)


def _disable_network(mp: pytest.MonkeyPatch) -> None:
    def refuse(*args, **kwargs):
        raise AssertionError("network access attempted")

    mp.setattr(socket, "socket", refuse)
    mp.setattr(socket, "create_connection", refuse)
    mp.setattr(socket, "getaddrinfo", refuse)


@pytest.fixture
def no_network(monkeypatch):
    _disable_network(monkeypatch)


@pytest.fixture(scope="session")
def mnist1d_cache(tmp_path_factory) -> Path:
    """A cache directory holding MNIST-1D really generated (~2 s) into an empty directory
    with the network disabled; the global RNGs must come back unchanged. Generated once per
    test session: xdist workers share it through a lock in the session's base directory."""
    root = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        root = root.parent  # shared by the workers of this session only
    cache = root / "mnist1d-cache"
    with open(root / "mnist1d-cache.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not any(cache.glob("*.npz")):
            np_state, py_state = np.random.get_state(), random.getstate()
            with pytest.MonkeyPatch.context() as mp:
                _disable_network(mp)
                ds.mnist1d(cache_dir=cache)
            after = np.random.get_state()
            assert random.getstate() == py_state and after[0] == np_state[0]
            assert np.array_equal(after[1], np_state[1]) and after[2:] == np_state[2:]
    return cache


@functools.cache
def _load(name: str, cache: Path | None, **kwargs) -> Dataset:
    """Shared loads (datasets are immutable, so sharing between tests is safe)."""
    return load_dataset(name, cache_dir=cache, **kwargs)


@pytest.fixture
def load(request):
    """Shared loads; only MNIST-1D needs (and triggers) the generated cache."""
    def get(name: str, **kwargs) -> Dataset:
        cache = request.getfixturevalue("mnist1d_cache") if name == "mnist1d" else None
        return _load(name, cache, **kwargs)

    return get


def _rows(*parts: tuple[np.ndarray, np.ndarray]) -> list[bytes]:
    """Sorted (label, input) byte strings: compares splits as multisets of examples."""
    return sorted(y.tobytes() + x.tobytes()
                  for xs, ys in parts for x, y in zip(xs, ys, strict=True))


def _channel_stats(x: np.ndarray, flat: bool):
    axes = (0,) if flat else tuple(range(x.ndim - 1))
    return x.mean(axis=axes, dtype=np.float64), x.std(axis=axes, dtype=np.float64)


# --------------------------------------------------------------------------- registry, errors


def test_registry_names_and_descriptions():
    assert set(DATASETS) == {"mnist1d", "digits", "mnist5k", "cifar10"}
    assert all(isinstance(d, str) and d and "\n" not in d for d in DATASETS.values())
    assert "random_images" not in DATASETS


def test_unknown_name_suggests_close_match():
    with pytest.raises(ValueError) as e:
        load_dataset("mnist-1d")
    msg = str(e.value)
    assert "'mnist-1d'" in msg and "did you mean 'mnist1d'" in msg
    assert "valid: cifar10, digits, mnist1d, mnist5k" in msg
    with pytest.raises(ValueError, match="valid: cifar10") as e:
        load_dataset("imagenet")
    assert "did you mean" not in str(e.value)


@pytest.mark.parametrize("bad", [-0.1, 1.0, 1.5, float("nan")])
@pytest.mark.parametrize("name", ["digits", "mnist1d", "cifar10"])
def test_bad_val_fraction(name, bad, tmp_path):
    # raised before any data is read (cifar10 has no data here at all)
    with pytest.raises(ValueError, match=re.escape("val_fraction must be in [0, 1)")):
        load_dataset(name, val_fraction=bad, cache_dir=tmp_path, data_dir=tmp_path)
    assert not list(tmp_path.iterdir())


def test_bad_seed_and_type_errors():
    with pytest.raises(ValueError, match="seed"):
        load_dataset("digits", seed=-1)
    with pytest.raises(TypeError, match="val_fraction"):
        load_dataset("digits", val_fraction="0.1")
    with pytest.raises(ValueError, match="no training examples"):
        split_indices(3, 0.9, 0)


# --------------------------------------------------------------------------- every loader


@pytest.mark.parametrize("name", LOCAL)
def test_shapes_dtypes_sizes(name, load):
    d = load(name)
    pool, n_test, shape = EXPECTED[name]
    n_val = round(0.1 * pool)
    assert d.name == name and d.num_classes == 10 and d.description == DATASETS[name]
    assert d.input_shape == shape
    for x, y, n in [(d.x_train, d.y_train, pool - n_val), (d.x_val, d.y_val, n_val),
                    (d.x_test, d.y_test, n_test)]:
        assert x.shape == (n, *shape) and y.shape == (n,)
        assert x.dtype == np.float32 and y.dtype == np.int32
        assert x.flags.c_contiguous and y.flags.c_contiguous
        assert not x.flags.writeable and not y.flags.writeable
        assert np.isfinite(x).all() and y.min() >= 0 and y.max() <= 9
    assert set(np.unique(d.y_train)) == set(range(10))
    assert d.summary() == (f"{name}: train {pool - n_val} / val {n_val} / test {n_test}, "
                           f"input {shape}, 10 classes")


@pytest.mark.parametrize("name", LOCAL)
def test_normalization_uses_training_statistics(name, load):
    d, raw = load(name), load(name, normalize=False)
    flat = name == "mnist1d"
    mean, std = _channel_stats(d.x_train, flat)
    np.testing.assert_allclose(mean, 0.0, atol=1e-5)
    np.testing.assert_allclose(std, 1.0, atol=1e-4)
    raw_mean, raw_std = _channel_stats(raw.x_train, flat)
    for split in ("train", "val", "test"):  # the same affine map on every split
        expected = (getattr(raw, f"x_{split}") - raw_mean) / raw_std
        np.testing.assert_allclose(getattr(d, f"x_{split}"), expected, atol=1e-4)
        np.testing.assert_array_equal(getattr(d, f"y_{split}"), getattr(raw, f"y_{split}"))
    if not flat:
        assert raw.x_train.min() == 0.0 and raw.x_train.max() == 1.0


@pytest.mark.parametrize("name", LOCAL)
def test_determinism_and_seed_changes_only_train_val(name, request):
    cache = request.getfixturevalue("mnist1d_cache") if name == "mnist1d" else None
    kw = {"normalize": False, "cache_dir": cache}
    a, b = load_dataset(name, seed=3, **kw), load_dataset(name, seed=3, **kw)
    c = load_dataset(name, seed=4, **kw)
    for f in ("x_train", "y_train", "x_val", "y_val", "x_test", "y_test"):
        np.testing.assert_array_equal(getattr(a, f), getattr(b, f))
    assert not np.array_equal(a.x_val, c.x_val)
    np.testing.assert_array_equal(a.x_test, c.x_test)
    np.testing.assert_array_equal(a.y_test, c.y_test)
    # both seeds partition the same training pool (no example lost, none duplicated)
    assert (_rows((a.x_train, a.y_train), (a.x_val, a.y_val))
            == _rows((c.x_train, c.y_train), (c.x_val, c.y_val)))


@pytest.mark.parametrize("name", LOCAL)
def test_val_fraction_zero(name, load):
    d = load(name, val_fraction=0.0, normalize=False)
    pool, _, shape = EXPECTED[name]
    assert d.x_train.shape == (pool, *shape)
    assert d.x_val.shape == (0, *shape) and d.y_val.shape == (0,)
    assert d.x_val.dtype == np.float32 and d.y_val.dtype == np.int32
    other = load(name, val_fraction=0.25, normalize=False)
    assert len(other.y_val) == round(0.25 * pool)
    assert (_rows((d.x_train, d.y_train))
            == _rows((other.x_train, other.y_train), (other.x_val, other.y_val)))


def test_fixed_test_splits_are_stratified(load):
    m = load("mnist5k")
    labels = np.concatenate([m.y_train, m.y_val, m.y_test])
    assert np.bincount(labels).tolist() == [500] * 10
    assert np.bincount(m.y_test).tolist() == [100] * 10
    d = load("digits")
    assert len(d.y_train) + len(d.y_val) + len(d.y_test) == 1797
    counts = np.bincount(np.concatenate([d.y_train, d.y_val, d.y_test]))
    assert np.bincount(d.y_test).tolist() == [round(0.2 * c) for c in counts]


def test_mnist1d_is_the_official_split(mnist1d_cache, load):
    from mnist1d.data import get_dataset_args

    official = get_dataset_args(as_dict=True)
    official.pop("url")
    assert official == ds.MNIST1D_ARGS
    raw = load("mnist1d", normalize=False, val_fraction=0.0)
    assert np.bincount(raw.y_test).sum() == 1000 and raw.y_train.shape == (4000,)
    # mnist1d standardises the whole generated set itself
    both = np.concatenate([raw.x_train, raw.x_test])
    assert abs(both.mean()) < 1e-3 and abs(both.std() - 1) < 1e-3


# --------------------------------------------------------------------------- splitting


@settings(deadline=None, max_examples=50)  # no timing flakes on a loaded CI machine
@given(n=st.integers(1, 300), frac=st.floats(0.0, 0.99), seed=st.integers(0, 2**32))
def test_split_indices_partition(n, frac, seed):
    n_val = round(frac * n)
    if n_val >= n:
        with pytest.raises(ValueError):
            split_indices(n, frac, seed)
        return
    train, val = split_indices(n, frac, seed)
    assert len(val) == n_val and len(train) == n - n_val
    assert not set(train.tolist()) & set(val.tolist())
    np.testing.assert_array_equal(np.sort(np.concatenate([train, val])), np.arange(n))
    np.testing.assert_array_equal(split_indices(n, frac, seed)[1], val)


# --------------------------------------------------------------------------- no network


@pytest.mark.usefixtures("no_network")
def test_loads_without_network(mnist1d_cache):
    # mnist1d_cache generated MNIST-1D offline into an empty directory; see the fixture
    with pytest.raises(AssertionError, match="network"):  # the fixture is in force
        socket.create_connection(("example.com", 80))
    assert load_dataset("mnist1d", cache_dir=mnist1d_cache).x_train.shape == (3600, 40)
    assert load_dataset("digits").x_test.shape == (359, 8, 8, 1)
    assert load_dataset("mnist5k").x_test.shape == (1000, 28, 28, 1)


# --------------------------------------------------------------------------- MNIST-1D cache


def _cache_file(cache: Path) -> Path:
    (path,) = cache.glob("*.npz")
    return path


@pytest.fixture
def fake_generator(monkeypatch, mnist1d_cache):
    """Replaces ``mnist1d.data.make_dataset`` by a fast copy of the real output; counts calls."""
    import mnist1d.data

    with np.load(_cache_file(mnist1d_cache)) as f:
        real = {k: f[k] for k in f.files}
    calls = []

    def make_dataset(args=None, template=None):
        calls.append(args)
        np.random.seed(args.seed)  # like the real one, clobber the global RNGs
        random.seed(args.seed)
        return {**real, "t": np.zeros(40), "templates": {}}

    monkeypatch.setattr(mnist1d.data, "make_dataset", make_dataset)
    return calls


def test_cache_name_and_default_location(mnist1d_cache, monkeypatch, tmp_path):
    path = _cache_file(mnist1d_cache)
    assert re.fullmatch(r"mnist1d-[0-9a-f]{16}\.npz", path.name)
    assert [p.name for p in mnist1d_cache.iterdir()] == [path.name]  # no temp files
    monkeypatch.setenv("OPTLAB_CACHE", str(tmp_path / "a"))
    assert ds.default_cache_dir() == tmp_path / "a"
    monkeypatch.delenv("OPTLAB_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert ds.default_cache_dir() == tmp_path / "xdg" / "optlab"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert ds.default_cache_dir() == tmp_path / "home" / ".cache" / "optlab"


def test_second_load_reads_cache(mnist1d_cache, monkeypatch, load):
    import mnist1d.data

    def boom(*args, **kwargs):
        raise AssertionError("regenerated although cached")

    monkeypatch.setattr(mnist1d.data, "make_dataset", boom)
    again = load_dataset("mnist1d", cache_dir=mnist1d_cache)
    np.testing.assert_array_equal(again.x_train, load("mnist1d").x_train)


def test_default_cache_dir_is_used(fake_generator, tmp_path):
    load_dataset("mnist1d")  # OPTLAB_CACHE points into tmp_path (autouse fixture)
    assert len(list((tmp_path / "default-cache").glob("mnist1d-*.npz"))) == 1
    load_dataset("mnist1d")
    assert len(fake_generator) == 1
    assert fake_generator[0].seed == 42 and fake_generator[0].num_samples == 5000


@pytest.mark.parametrize("content", [b"", b"not a zip file", "truncated", "wrong-shape"])
def test_corrupt_cache_is_regenerated(content, fake_generator, mnist1d_cache, tmp_path, load):
    good = _cache_file(mnist1d_cache)
    path = tmp_path / good.name
    if content == "truncated":
        content = good.read_bytes()[: good.stat().st_size // 2]
    elif content == "wrong-shape":
        np.savez(path, x=np.zeros((3, 40)), y=np.zeros(3), x_test=np.zeros((1, 40)),
                 y_test=np.zeros(1))
        content = path.read_bytes()
    path.write_bytes(content)
    with pytest.warns(UserWarning, match="MNIST-1D cache"):
        d = load_dataset("mnist1d", cache_dir=tmp_path)
    assert len(fake_generator) == 1
    np.testing.assert_array_equal(d.x_train, load("mnist1d").x_train)
    assert path.read_bytes() == good.read_bytes()  # overwritten with the good arrays
    assert [p.name for p in tmp_path.iterdir()] == [path.name]


def test_cache_write_is_atomic(fake_generator, monkeypatch, tmp_path):
    def failing_replace(src, dst):
        assert Path(src).parent == Path(dst).parent and Path(src).exists()
        raise OSError("disk full")

    monkeypatch.setattr(ds.os, "replace", failing_replace)
    with pytest.warns(UserWarning, match="could not write MNIST-1D cache"):
        d = load_dataset("mnist1d", cache_dir=tmp_path)
    assert d.x_train.shape == (3600, 40)  # data still returned
    assert list(tmp_path.iterdir()) == []  # neither a partial cache nor a temp file


def test_global_rng_restored_after_generation(fake_generator, tmp_path):
    random.seed(123)
    np.random.seed(123)
    expected = (random.random(), np.random.rand())
    random.seed(123)
    np.random.seed(123)
    load_dataset("mnist1d", cache_dir=tmp_path)
    assert (random.random(), np.random.rand()) == expected


# --------------------------------------------------------------------------- CIFAR-10


def _write_batch(path: Path, data: np.ndarray, labels: list[int], **extra) -> None:
    with open(path, "wb") as f:
        pickle.dump({b"batch_label": b"fake", b"data": data, b"labels": labels,
                     b"filenames": [b"x.png"] * len(labels), **extra}, f, protocol=2)


def _write_cifar(root: Path, n: int = 20) -> dict[str, tuple[np.ndarray, list[int]]]:
    """Five training batches and a test batch of ``n`` images each, in the real format."""
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    batches = {}
    for name in [*(f"data_batch_{i}" for i in range(1, 6)), "test_batch"]:
        data = rng.integers(0, 256, (n, 3072), dtype=np.uint8)
        labels = rng.integers(0, 10, n).tolist()
        if name == "test_batch":
            data[0] = 0
            data[0, 1 * 1024 + 5 * 32 + 7] = 200  # green channel, row 5, column 7
        _write_batch(folder / name, data, labels)
        batches[name] = (data, labels)
    with open(folder / "batches.meta", "wb") as f:
        pickle.dump({b"label_names": [b"airplane"] * 10, b"num_vis": 3072}, f)
    return batches


@pytest.fixture
def cifar_dir(tmp_path):
    return tmp_path, _write_cifar(tmp_path)


def test_cifar10_layout_and_splits(cifar_dir):
    root, batches = cifar_dir
    d = load_dataset("cifar10", data_dir=root, normalize=False, seed=1)
    assert d.x_train.shape == (90, 32, 32, 3) and d.x_val.shape == (10, 32, 32, 3)
    assert d.x_test.shape == (20, 32, 32, 3) and d.input_shape == (32, 32, 3)
    assert d.x_train.dtype == np.float32 and d.y_train.dtype == np.int32
    assert d.x_test.flags.c_contiguous
    # the known pixel lands at NHWC position [0, row 5, col 7, channel 1]
    assert d.x_test[0, 5, 7, 1] == np.float32(200 / 255)
    assert np.count_nonzero(d.x_test[0]) == 1
    # the whole pool round-trips: planes R, G, B of 32x32 → NHWC, scaled to [0, 1]
    data = np.concatenate([batches[f"data_batch_{i}"][0] for i in range(1, 6)])
    labels = np.concatenate([batches[f"data_batch_{i}"][1] for i in range(1, 6)])
    nhwc = data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1) / np.float32(255)
    train, val = split_indices(100, 0.1, 1)
    np.testing.assert_array_equal(d.x_train, nhwc[train])
    np.testing.assert_array_equal(d.y_val, labels[val])
    np.testing.assert_array_equal(d.y_test, batches["test_batch"][1])


def test_cifar10_normalized_and_folder_forms(cifar_dir, monkeypatch):
    root, _ = cifar_dir
    d = load_dataset("cifar10", data_dir=root / "cifar-10-batches-py")
    mean, std = _channel_stats(d.x_train, flat=False)
    np.testing.assert_allclose(mean, 0.0, atol=1e-5)
    np.testing.assert_allclose(std, 1.0, atol=1e-4)
    monkeypatch.setenv(ds.CIFAR10_ENV, str(root))  # the parent folder via the env var
    np.testing.assert_array_equal(ds.cifar10().x_test, d.x_test)
    raw = load_dataset("cifar10", seed=5, normalize=False)
    np.testing.assert_array_equal(raw.x_test, ds.cifar10(root, normalize=False).x_test)


def test_cifar10_needs_a_directory():
    with pytest.raises(ValueError, match="data_dir") as e:
        load_dataset("cifar10")
    assert ds.CIFAR10_ENV in str(e.value) and "cs.toronto.edu" in str(e.value)


def test_cifar10_missing_directory(tmp_path):
    missing = tmp_path / "nowhere"
    with pytest.raises(FileNotFoundError) as e:
        load_dataset("cifar10", data_dir=missing)
    assert str(missing) in str(e.value) and "data_batch_1..data_batch_5" in str(e.value)


def test_cifar10_missing_batch(cifar_dir):
    root, _ = cifar_dir
    folder = root / "cifar-10-batches-py"
    (folder / "data_batch_3").unlink()
    with pytest.raises(FileNotFoundError, match="data_batch_3") as e:
        load_dataset("cifar10", data_dir=root)
    assert str(folder) in str(e.value) and "cifar-10-python.tar.gz" in str(e.value)


def _good():
    return np.zeros((20, 3072), np.uint8), [0] * 20


MALFORMED = {
    "not a pickle": lambda p: p.write_bytes(b"definitely not a pickle"),
    "empty file": lambda p: p.write_bytes(b""),
    "not a dict": lambda p: p.write_bytes(pickle.dumps([1, 2, 3])),
    "missing labels": lambda p: p.write_bytes(pickle.dumps({b"data": _good()[0]})),
    "missing data": lambda p: p.write_bytes(pickle.dumps({b"labels": _good()[1]})),
    "wrong width": lambda p: _write_batch(p, np.zeros((20, 3000), np.uint8), [0] * 20),
    "wrong dtype": lambda p: _write_batch(p, np.zeros((20, 3072), np.float32), [0] * 20),
    "label count": lambda p: _write_batch(p, _good()[0], [0] * 19),
    "label range": lambda p: _write_batch(p, _good()[0], [10] * 20),
}


@pytest.mark.parametrize("kind", sorted(MALFORMED))
def test_cifar10_malformed_batch(kind, cifar_dir):
    root, _ = cifar_dir
    path = root / "cifar-10-batches-py" / "data_batch_2"
    MALFORMED[kind](path)
    with pytest.raises(ValueError) as e:
        load_dataset("cifar10", data_dir=root)
    assert str(path) in str(e.value) and "cs.toronto.edu" in str(e.value)


def test_cifar10_accepts_str_keys(cifar_dir):
    root, batches = cifar_dir
    data, labels = batches["test_batch"]
    with open(root / "cifar-10-batches-py" / "test_batch", "wb") as f:
        pickle.dump({"data": data, "labels": np.asarray(labels)}, f)
    d = load_dataset("cifar10", data_dir=root, normalize=False)
    np.testing.assert_array_equal(d.y_test, labels)


# --------------------------------------------------------------------------- container, synthetic


def test_dataset_is_immutable_and_validated():
    d = random_images(8, shape=(4, 4, 2), num_classes=3, seed=1, n_test=5)
    with pytest.raises(dataclasses.FrozenInstanceError):
        d.name = "other"
    with pytest.raises(ValueError, match="read-only"):
        d.x_train[0, 0, 0, 0] = 1.0
    x, y = np.zeros((4, 3), np.float64), np.zeros(4, np.int64)
    ok = Dataset("t", x, y, x[:0], y[:0], x, y, 2, "test")
    assert ok.x_train.dtype == np.float32 and ok.y_train.dtype == np.int32
    assert x.flags.writeable  # coerced, so copied
    base = np.zeros((6, 3), np.float32)
    view = Dataset("t", base[:4], y, base[:0], y[:0], base[2:], y, 2, "test")
    assert base.flags.writeable and not np.shares_memory(view.x_train, base)
    with pytest.raises(ValueError, match="same number of examples"):
        Dataset("t", x, y[:3], x, y, x, y, 2, "test")
    with pytest.raises(ValueError, match="per-example shape"):
        Dataset("t", x, y, np.zeros((1, 5)), y[:1], x, y, 2, "test")
    with pytest.raises(ValueError, match="labels must lie in"):
        Dataset("t", x, y + 2, x, y, x, y, 2, "test")


def test_random_images():
    d = random_images(16, seed=3, n_test=4)
    assert d.x_train.shape == (16, 32, 32, 3) and d.x_test.shape == (4, 32, 32, 3)
    assert d.x_val.shape == (0, 32, 32, 3) and d.x_train.dtype == np.float32
    assert d.y_train.dtype == np.int32 and d.y_train.min() >= 0 and d.y_train.max() < 10
    assert d.name not in DATASETS and "synthetic" in d.description
    np.testing.assert_array_equal(d.x_train, random_images(16, seed=3, n_test=4).x_train)
    assert not np.array_equal(d.x_train, random_images(16, seed=4).x_train)
    assert random_images(2, shape=(7,), num_classes=2).input_shape == (7,)
    with pytest.raises(ValueError, match="n must be"):
        random_images(0)

