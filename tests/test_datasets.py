"""IDX reading: crafted files (raw and gzipped, good and broken), the real MNIST test set when it is
beside the project, Fashion-MNIST when Debian's package is installed, and the shipped sample."""

import gzip
import hashlib
import os
import struct
from pathlib import Path

import numpy as np
import pytest

from fastdecode.datasets import (FASHION_CLASSES, IDX, MNIST_CLASSES, fashion_sample,
                                 load_directory, load_idx)

FASHION_DIR = Path("/usr/share/datasets/fashion-mnist")


def idx_bytes(array, magic=None):
    """An IDX file's bytes written by hand: big-endian magic, sizes, then the uint8 data."""
    array = np.asarray(array, dtype=np.uint8)
    if magic is None:
        magic = 0x0800 | array.ndim
    return (struct.pack(">I", magic) + b"".join(struct.pack(">I", s) for s in array.shape)
            + array.tobytes())


def write(path, data, gz=False):
    path.write_bytes(gzip.compress(data) if gz else data)
    return path


@pytest.fixture
def images_labels():
    rng = np.random.default_rng(1)
    return (rng.integers(0, 256, size=(7, 5, 3), dtype=np.uint8),
            rng.integers(0, 10, size=7, dtype=np.uint8))


@pytest.mark.parametrize("gz", [False, True])
def test_round_trip(tmp_path, images_labels, gz):
    images, labels = images_labels
    ip = write(tmp_path / "img", idx_bytes(images), gz)
    lp = write(tmp_path / "lab", idx_bytes(labels), gz)
    out = load_idx(ip, lp)
    assert isinstance(out, IDX)
    assert out.images.dtype == np.uint8 and out.images.shape == (7, 5, 3)
    assert out.labels.dtype == np.uint8 and out.labels.shape == (7,)
    np.testing.assert_array_equal(out.images, images)
    np.testing.assert_array_equal(out.labels, labels)
    # str paths, and no labels
    only = load_idx(str(ip))
    assert only.labels is None
    np.testing.assert_array_equal(only.images, images)
    assert out.images.flags.writeable


def test_gzip_detected_by_content_not_name(tmp_path, images_labels):
    images, _ = images_labels
    raw = write(tmp_path / "a.gz", idx_bytes(images))            # raw data, misleading name
    packed = write(tmp_path / "b", idx_bytes(images), gz=True)    # gzipped, no .gz
    np.testing.assert_array_equal(load_idx(raw).images, images)
    np.testing.assert_array_equal(load_idx(packed).images, images)


@pytest.mark.parametrize("gz", [False, True])
@pytest.mark.parametrize("magic", [2049, 0x0D03, 0x0804, 0x12340803, 0])
def test_bad_magic_names_the_file(tmp_path, images_labels, gz, magic):
    images, _ = images_labels
    path = write(tmp_path / "bad-magic", idx_bytes(images, magic=magic), gz)
    with pytest.raises(ValueError, match="bad-magic.*magic number %d" % magic):
        load_idx(path)


def test_labels_file_given_as_images_and_back(tmp_path, images_labels):
    images, labels = images_labels
    ip = write(tmp_path / "img", idx_bytes(images))
    lp = write(tmp_path / "lab", idx_bytes(labels))
    with pytest.raises(ValueError, match="lab.*not an IDX file of images"):
        load_idx(lp)
    with pytest.raises(ValueError, match="img.*not an IDX file of labels"):
        load_idx(ip, ip)


@pytest.mark.parametrize("gz", [False, True])
@pytest.mark.parametrize("cut", [1, 100, 7 * 15, 7 * 15 + 10, 7 * 15 + 14, 7 * 15 + 16 - 1])
def test_truncated(tmp_path, images_labels, gz, cut):
    images, _ = images_labels
    data = idx_bytes(images)                 # 16-byte header + 105 bytes
    path = write(tmp_path / "short", data[:len(data) - cut], gz)
    with pytest.raises(ValueError, match="short.*truncated"):
        load_idx(path)


def test_empty_file(tmp_path):
    with pytest.raises(ValueError, match="empty.*truncated"):
        load_idx(write(tmp_path / "empty", b""))


def test_broken_gzip_stream(tmp_path, images_labels):
    images, _ = images_labels
    packed = gzip.compress(idx_bytes(images))
    path = write(tmp_path / "cut.gz", packed[:len(packed) // 2])
    with pytest.raises(ValueError, match="cut.gz"):
        load_idx(path)
    corrupt = bytearray(packed)
    corrupt[-6] ^= 0xFF                      # CRC32 of the gzip member
    with pytest.raises(ValueError, match="bad-crc.gz"):
        load_idx(write(tmp_path / "bad-crc.gz", bytes(corrupt)))


@pytest.mark.parametrize("gz", [False, True])
def test_data_beyond_the_header(tmp_path, images_labels, gz):
    images, _ = images_labels
    path = write(tmp_path / "long", idx_bytes(images) + b"\0", gz)
    with pytest.raises(ValueError, match="long.*beyond"):
        load_idx(path)


def test_count_mismatch_names_both_files(tmp_path, images_labels):
    images, labels = images_labels
    ip = write(tmp_path / "img7", idx_bytes(images))
    lp = write(tmp_path / "lab6", idx_bytes(labels[:6]))
    with pytest.raises(ValueError, match="lab6 holds 6 labels but .*img7 holds 7 images"):
        load_idx(ip, lp)


@pytest.mark.parametrize("gz", [False, True])
def test_absurd_sizes_refused_before_reading(tmp_path, gz):
    header = struct.pack(">IIII", 0x0803, 4_000_000_000, 60_000, 60_000)
    path = write(tmp_path / "huge", header + b"\0" * 64, gz)
    with pytest.raises(ValueError, match="huge.*more than the limit"):
        load_idx(path)
    small = write(tmp_path / "small", idx_bytes(np.zeros((10, 28, 28))), gz)
    assert load_idx(small, max_bytes=7840).images.shape == (10, 28, 28)
    with pytest.raises(ValueError, match="small.*more than the limit of 7839"):
        load_idx(small, max_bytes=7839)


def test_zero_image_size(tmp_path):
    path = write(tmp_path / "flat", struct.pack(">IIII", 0x0803, 3, 0, 28))
    with pytest.raises(ValueError, match="flat.*empty image size 0x28"):
        load_idx(path)


def test_missing_files(tmp_path, images_labels):
    with pytest.raises(FileNotFoundError, match="nowhere"):
        load_idx(tmp_path / "nowhere")
    ip = write(tmp_path / "img", idx_bytes(images_labels[0]))
    with pytest.raises(FileNotFoundError, match="no-labels"):
        load_idx(ip, tmp_path / "no-labels")
    with pytest.raises(IsADirectoryError, match="is a directory.*load_directory"):
        load_idx(tmp_path)


@pytest.mark.parametrize("gz", [False, True])
def test_load_directory(tmp_path, images_labels, gz):
    images, labels = images_labels
    ext = ".gz" if gz else ""
    write(tmp_path / ("t10k-images-idx3-ubyte" + ext), idx_bytes(images), gz)
    write(tmp_path / ("t10k-labels-idx1-ubyte" + ext), idx_bytes(labels), gz)
    out = load_directory(tmp_path)
    np.testing.assert_array_equal(out.images, images)
    np.testing.assert_array_equal(out.labels, labels)
    with pytest.raises(FileNotFoundError, match="train-images-idx3-ubyte and "
                                                "train-labels-idx1-ubyte"):
        load_directory(tmp_path, split="train")
    write(tmp_path / "train-images-idx3-ubyte", idx_bytes(images[:3]))
    write(tmp_path / "train-labels-idx1-ubyte.gz", idx_bytes(labels[:3]), gz=True)
    train = load_directory(tmp_path, split="train")
    np.testing.assert_array_equal(train.labels, labels[:3])


def test_load_directory_errors(tmp_path):
    with pytest.raises(ValueError, match="split must be one of 'test', 'train'"):
        load_directory(tmp_path, split="val")
    with pytest.raises(FileNotFoundError, match="data directory not found"):
        load_directory(tmp_path / "absent")
    with pytest.raises(FileNotFoundError, match="did not find t10k-images-idx3-ubyte, "
                                                "t10k-labels-idx1-ubyte"):
        load_directory(tmp_path)


def test_class_names():
    assert len(FASHION_CLASSES) == 10 and len(set(FASHION_CLASSES)) == 10
    assert FASHION_CLASSES[0] == "T-shirt/top" and FASHION_CLASSES[9] == "Ankle boot"
    assert list(MNIST_CLASSES) == [str(d) for d in range(10)]


# --- the real files --------------------------------------------------------------------------

def test_real_mnist_test_set(shared_data):
    directory = shared_data / "mnist"
    mnist = load_directory(directory)
    assert mnist.images.shape == (10000, 28, 28) and mnist.images.dtype == np.uint8
    assert mnist.labels[:10].tolist() == [7, 2, 1, 0, 4, 1, 4, 9, 5, 9]
    assert np.bincount(mnist.labels).tolist() == [980, 1135, 1032, 1010, 982, 892, 958, 1028,
                                                  974, 1009]
    # The canonical uncompressed files (SOURCES.md gives their md5), rebuilt from what was read.
    assert hashlib.md5(idx_bytes(mnist.images)).hexdigest() == "2646ac647ad5339dbf082846283269ea"
    assert hashlib.md5(idx_bytes(mnist.labels)).hexdigest() == "27ae3e4e09519cfbb04c329615203637"
    # Digits are dark strokes on a black background: the border is mostly 0, the centre is not.
    assert mnist.images[:, 0, :].mean() < 1 and mnist.images[:, 10:18, 10:18].mean() > 60
    with pytest.raises(FileNotFoundError, match="train-images-idx3-ubyte"):
        load_directory(directory, split="train")


def test_real_mnist_training_labels(shared_data):
    path = shared_data / "mnist" / "train-labels-idx1-ubyte.gz"
    with pytest.raises(ValueError, match="train-labels-idx1-ubyte.gz.*not an IDX file of images"):
        load_idx(path)


@pytest.mark.skipif(not FASHION_DIR.is_dir(), reason="dataset-fashion-mnist is not installed")
def test_fashion_mnist_package():
    test = load_directory(FASHION_DIR)
    train = load_directory(FASHION_DIR, split="train")
    assert test.images.shape == (10000, 28, 28) and train.images.shape == (60000, 28, 28)
    assert np.bincount(test.labels).tolist() == [1000] * 10
    assert np.bincount(train.labels).tolist() == [6000] * 10
    sample = fashion_sample()
    np.testing.assert_array_equal(sample.images, test.images[:1000])
    np.testing.assert_array_equal(sample.labels, test.labels[:1000])


def test_shipped_sample():
    sample = fashion_sample()
    assert sample.images.shape == (1000, 28, 28) and sample.images.dtype == np.uint8
    assert sample.labels.shape == (1000,) and sample.labels.dtype == np.uint8
    counts = np.bincount(sample.labels, minlength=10)
    assert counts.size == 10 and counts.min() >= 50      # every class is there
    assert sample.images.max() == 255 and sample.images.min() == 0
    # a fresh, writable copy each time
    sample.images[0] = 0
    assert fashion_sample().images[0].any()
    here = Path(__file__).resolve().parents[1] / "fastdecode" / "datasets"
    if here.is_dir():
        sizes = [os.path.getsize(p) for p in here.glob("*.gz")]
        assert len(sizes) == 2 and sum(sizes) < 1_000_000
