"""load_mnist reads the standard IDX files (written here, tiny; nothing is downloaded) and
explains a missing, truncated or foreign file."""
import gzip
import os

import numpy as np
import pytest

from cytorch.datasets import load_mnist


def idx_bytes(array, type_code=0x08):
    """The IDX encoding of ``array``: magic ``0 0 type rank``, big-endian sizes, the data."""
    dtype = {0x08: ">u1", 0x0B: ">i2"}[type_code]
    header = bytes([0, 0, type_code, array.ndim]) + np.array(array.shape, ">u4").tobytes()
    return header + np.ascontiguousarray(array, dtype).tobytes()


def write(path, data, gz=False):
    if gz:
        with gzip.open(str(path) + ".gz", "wb") as f:
            f.write(data)
    else:
        path.write_bytes(data)


def mnist_folder(folder, n_train=5, n_test=3, gz=False, seed=0):
    rng = np.random.default_rng(seed)
    parts = {}
    for stem, n in (("train", n_train), ("t10k", n_test)):
        images = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        labels = rng.integers(0, 10, n, dtype=np.uint8)
        write(folder / f"{stem}-images-idx3-ubyte", idx_bytes(images), gz)
        write(folder / f"{stem}-labels-idx1-ubyte", idx_bytes(labels), gz)
        parts[stem] = images, labels
    return parts


@pytest.mark.parametrize("gz", [False, True])
def test_reads_both_parts_gzipped_or_not(tmp_path, gz):
    parts = mnist_folder(tmp_path, gz=gz)
    for kind, stem in (("train", "train"), ("test", "t10k")):
        X, y = load_mnist(tmp_path, kind=kind)
        images, labels = parts[stem]
        assert X.shape == (len(images), 28, 28, 1) and X.dtype == np.float32
        assert y.dtype == np.int64 and y.tolist() == labels.tolist()
        np.testing.assert_array_equal(X[..., 0], images.astype(np.float32) / 255)
        assert X.min() >= 0 and X.max() <= 1


def test_the_default_is_train_and_a_str_folder_with_a_tilde_works(tmp_path, monkeypatch):
    (tmp_path / "data").mkdir()
    mnist_folder(tmp_path / "data")
    monkeypatch.setenv("HOME", str(tmp_path))
    X, _ = load_mnist("~/data")
    assert len(X) == 5


def test_the_dotted_file_names_some_copies_use(tmp_path):
    images = np.arange(2 * 28 * 28, dtype=np.uint32).reshape(2, 28, 28) % 256
    write(tmp_path / "t10k-images.idx3-ubyte", idx_bytes(images))
    write(tmp_path / "t10k-labels.idx1-ubyte", idx_bytes(np.array([3, 9])))
    X, y = load_mnist(tmp_path, kind="test")
    assert X.shape == (2, 28, 28, 1) and y.tolist() == [3, 9]


def test_the_input_is_not_modified_and_the_result_is_writable(tmp_path):
    mnist_folder(tmp_path)
    before = {f: (tmp_path / f).read_bytes() for f in os.listdir(tmp_path)}
    X, y = load_mnist(tmp_path)
    X[0, 0, 0, 0] = 0.5  # a fresh array, not a read-only view of the file's bytes
    y[0] = 1
    assert {f: (tmp_path / f).read_bytes() for f in os.listdir(tmp_path)} == before


# -- mistakes -----------------------------------------------------------------------------------
def test_a_missing_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"no such folder .*nope.*nothing is downloaded"):
        load_mnist(tmp_path / "nope")


def test_a_missing_file_names_it_and_lists_what_is_there(tmp_path):
    mnist_folder(tmp_path)
    os.remove(tmp_path / "t10k-labels-idx1-ubyte")
    with pytest.raises(FileNotFoundError,
                       match=r"kind='test'.* labels file t10k-labels-idx1-ubyte \(or "
                             r"t10k-labels-idx1-ubyte.gz\) in .*; it holds "
                             r"t10k-images-idx3-ubyte, train-images"):
        load_mnist(tmp_path, kind="test")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="it holds no IDX file"):
        load_mnist(tmp_path / "empty")


@pytest.mark.parametrize("cut", [2, 10, 100])
def test_a_truncated_file_says_how_much_is_missing(tmp_path, cut):
    mnist_folder(tmp_path)
    path = tmp_path / "train-images-idx3-ubyte"
    path.write_bytes(path.read_bytes()[:-cut] if cut != 10 else path.read_bytes()[:10])
    pattern = {2: r"is truncated: the header promises 5 x 28 x 28 values \(3,920 bytes of "
                  r"data\), the file holds 3,918",
               10: r"is truncated: 10 bytes, shorter than its 16-byte header",
               100: r"the file holds 3,820"}[cut]
    with pytest.raises(ValueError, match=pattern):
        load_mnist(tmp_path)


def test_a_truncated_gzip_file(tmp_path):
    mnist_folder(tmp_path, gz=True)
    path = tmp_path / "train-labels-idx1-ubyte.gz"
    path.write_bytes(path.read_bytes()[:-12])
    with pytest.raises(ValueError, match=r"train-labels-idx1-ubyte.gz is a truncated or damaged "
                                         r"gzip file .*copy it again"):
        load_mnist(tmp_path)


def test_extra_bytes_are_refused(tmp_path):
    mnist_folder(tmp_path)
    with open(tmp_path / "train-labels-idx1-ubyte", "ab") as f:
        f.write(b"\0")
    with pytest.raises(ValueError, match=r"longer than its header says: the header promises 5 "
                                         r"values \(5 bytes of data\), the file holds 6"):
        load_mnist(tmp_path)


def test_a_wrong_magic_number_is_named(tmp_path):
    mnist_folder(tmp_path)
    # the labels file where the images should be: rank 1 instead of 3
    (tmp_path / "train-images-idx3-ubyte").write_bytes(
        (tmp_path / "train-labels-idx1-ubyte").read_bytes())
    with pytest.raises(ValueError, match=r"train-images-idx3-ubyte is not an IDX file of rank 3: "
                                         r"its magic number is 0x00000801, expected 0x00000803"):
        load_mnist(tmp_path)
    (tmp_path / "train-images-idx3-ubyte").write_bytes(b"<html>not found</html>")
    with pytest.raises(ValueError, match=r"magic number is 0x3C68746D"):
        load_mnist(tmp_path)


def test_images_that_are_not_bytes(tmp_path):
    mnist_folder(tmp_path)
    write(tmp_path / "train-images-idx3-ubyte",
          idx_bytes(np.zeros((5, 28, 28), np.int16), type_code=0x0B))
    with pytest.raises(ValueError, match=r"holds int16 values, expected unsigned bytes"):
        load_mnist(tmp_path)


def test_gzip_under_a_plain_name_and_plain_under_a_gz_name(tmp_path):
    mnist_folder(tmp_path)
    path = tmp_path / "train-labels-idx1-ubyte"
    data = path.read_bytes()
    path.write_bytes(gzip.compress(data))
    with pytest.raises(ValueError, match=r"is gzip-compressed but its name does not end in "
                                         r"\.gz"):
        load_mnist(tmp_path)
    os.remove(path)
    (tmp_path / "train-labels-idx1-ubyte.gz").write_bytes(data)
    with pytest.raises(ValueError, match=r"is named \.gz but is not gzip-compressed"):
        load_mnist(tmp_path)


def test_images_and_labels_that_do_not_belong_together(tmp_path):
    mnist_folder(tmp_path)
    write(tmp_path / "train-labels-idx1-ubyte", idx_bytes(np.zeros(4, np.uint8)))
    with pytest.raises(ValueError, match=r"holds 5 images but .* holds 4 labels"):
        load_mnist(tmp_path)


@pytest.mark.parametrize("kind", ["training", "t10k", None, 1])
def test_kind_is_train_or_test(tmp_path, kind):
    with pytest.raises(ValueError, match=r"kind must be 'train' or 'test', got"):
        load_mnist(tmp_path, kind=kind)


def test_folder_must_be_a_path():
    with pytest.raises(TypeError, match=r"folder must be a path .* got int: 3"):
        load_mnist(3)
