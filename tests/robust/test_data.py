"""The data loaders: digits' fixed split, CIFAR-10's python batches and image folders
read with exact pixel values, pixel-copying up-sampling, one-line refusals."""

from __future__ import annotations

import os
import pickle

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from pathstats import PathstatsError
from pathstats.robust.data import (BatchTransform, DataError, channel_stats, check_data_spec, check_model_input, load_dataset,
                                   load_images, minimum_size, native_size, parse_augment, upsample)


# ----------------------------------------------------------------------------- digits


def test_digits_shapes_ranges_and_labels():
    from sklearn.datasets import load_digits

    data = load_digits()
    ds = load_dataset("digits")
    assert ds.train_x.shape == (1438, 1, 8, 8) and ds.test_x.shape == (359, 1, 8, 8)
    assert ds.train_x.dtype == torch.float32 and ds.train_y.dtype == torch.int64
    assert ds.classes == 10 and ds.input_shape == (1, 8, 8) and ds.bounds == (0.0, 1.0)
    x = torch.cat([ds.train_x, ds.test_x])
    assert float(x.min()) == 0.0 and float(x.max()) == 1.0
    # every image appears exactly once, with its label, pixels / 16 exactly
    theirs = {(bytes(np.asarray(im, dtype=np.float32) / 16), int(t)) for im, t in zip(data.images, data.target)}
    ours = {(bytes(im[0].numpy()), int(t)) for im, t in zip(x, torch.cat([ds.train_y, ds.test_y]))}
    assert len(ours) == len(theirs) and ours == theirs
    # stratified: each class sends round(0.2 n_c) images to the test split
    counts = np.bincount(data.target, minlength=10)
    assert torch.bincount(ds.test_y, minlength=10).tolist() == [int(round(0.2 * n)) for n in counts]


def test_digits_split_is_fixed():
    a, b = load_dataset("digits"), load_dataset("digits", device="cpu")
    assert torch.equal(a.train_x, b.train_x) and torch.equal(a.test_y, b.test_y)
    other = load_dataset("digits", seed=1)
    assert not torch.equal(a.test_x, other.test_x)


# ----------------------------------------------------------------------------- cifar10


def _write_cifar(root: str, per_batch: int = 3, seed: int = 0) -> dict:
    """A tiny CIFAR-10 folder in the python-batches layout; returns what it wrote."""
    rng = np.random.default_rng(seed)
    os.makedirs(root)
    written = {}
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        data = rng.integers(0, 256, size=(per_batch, 3072), dtype=np.uint8)
        labels = [int(v) for v in rng.integers(0, 10, size=per_batch)]
        with open(os.path.join(root, name), "wb") as f:
            pickle.dump({b"batch_label": name.encode(), b"data": data, b"labels": labels, b"filenames": [b"x.png"] * per_batch}, f)
        written[name] = (data, labels)
    names = [b"airplane", b"automobile", b"bird", b"cat", b"deer", b"dog", b"frog", b"horse", b"ship", b"truck"]
    with open(os.path.join(root, "batches.meta"), "wb") as f:
        pickle.dump({b"label_names": names, b"num_cases_per_batch": per_batch, b"num_vis": 3072}, f)
    return written


def test_cifar_loads_exact_pixels_from_the_folder_or_its_parent(tmp_path):
    root = str(tmp_path / "cifar-10-batches-py")
    written = _write_cifar(root)
    for spec in (f"cifar10:{root}", f"cifar10:{tmp_path}"):
        ds = load_dataset(spec)
        assert ds.train_x.shape == (15, 3, 32, 32) and ds.test_x.shape == (3, 3, 32, 32)
        assert ds.classes == 10 and ds.class_names[0] == "airplane" and ds.input_shape == (3, 32, 32)
        train = np.concatenate([written[f"data_batch_{i}"][0] for i in range(1, 6)])
        # channel-major rows: the first 1024 bytes are red, row by row
        assert np.array_equal(ds.train_x.numpy(), train.reshape(-1, 3, 32, 32).astype(np.float32) / np.float32(255))
        assert ds.train_y.tolist() == sum((written[f"data_batch_{i}"][1] for i in range(1, 6)), [])
        assert ds.test_x[1, 2, 31, 0].item() == np.float32(written["test_batch"][0][1, 2 * 1024 + 31 * 32]) / np.float32(255)
        assert ds.test_y.tolist() == written["test_batch"][1]
    up = load_dataset(f"cifar10:{root}", size=64)
    assert up.input_shape == (3, 64, 64) and torch.equal(up.test_x[:, :, ::2, 1::2], load_dataset(f"cifar10:{root}").test_x)


def test_cifar_refusals_are_one_line(tmp_path):
    with pytest.raises(DataError, match="no folder .*data_batch_1 ... data_batch_5, test_batch and batches.meta.*never downloaded"):
        check_data_spec(f"cifar10:{tmp_path / 'nope'}")
    root = tmp_path / "cifar-10-batches-py"
    _write_cifar(str(root))
    os.remove(root / "data_batch_3")
    with pytest.raises(DataError, match="lacks data_batch_3;") as info:
        check_data_spec(f"cifar10:{tmp_path}")
    assert "\n" not in str(info.value)
    (root / "data_batch_3").write_bytes(b"not a pickle")
    check_data_spec(f"cifar10:{root}")  # the layout is right; the contents are read on loading
    with pytest.raises(DataError, match="cannot read .*data_batch_3") as info:
        load_dataset(f"cifar10:{root}")
    assert "\n" not in str(info.value)
    with open(root / "data_batch_3", "wb") as f:
        pickle.dump({b"data": np.zeros((2, 100), np.uint8), b"labels": [0, 1]}, f)
    with pytest.raises(DataError, match="N x 3072"):
        load_dataset(f"cifar10:{root}")


def test_cifar_unpickler_builds_nothing_but_data(tmp_path):
    root = tmp_path / "cifar-10-batches-py"
    _write_cifar(str(root))

    class Evil:
        def __reduce__(self):
            return (os.system, ("echo pwned",))

    with open(root / "test_batch", "wb") as f:
        pickle.dump({b"data": Evil(), b"labels": []}, f)
    with pytest.raises(DataError, match="refusing to build"):
        load_dataset(f"cifar10:{root}")


# ----------------------------------------------------------------------------- folder


def _write_folder(root, classes, mode="L", size=(4, 4), per_class=2, seed=0) -> dict:
    from PIL import Image

    rng = np.random.default_rng(seed)
    written = {}
    for split in ("train", "test"):
        for c in classes[split] if isinstance(classes, dict) else classes:
            os.makedirs(root / split / c)
            for i in range(per_class):
                shape = size + ((3,) if mode == "RGB" else ())
                pixels = rng.integers(0, 256, size=shape, dtype=np.uint8)
                Image.fromarray(pixels, mode=mode).save(root / split / c / f"{i}.png")
                written[(split, c, i)] = pixels
    return written


def test_image_folder_loads_exact_pixels_with_sorted_classes(tmp_path):
    written = _write_folder(tmp_path, ["zebra", "ant", "mole"])
    ds = load_dataset(f"folder:{tmp_path}")
    assert ds.class_names == ("ant", "mole", "zebra") and ds.classes == 3
    assert ds.train_x.shape == (6, 1, 4, 4) and ds.input_shape == (1, 4, 4)
    assert ds.train_y.tolist() == [0, 0, 1, 1, 2, 2]
    expect = np.stack([written[("test", c, i)] for c in ("ant", "mole", "zebra") for i in range(2)])[:, None]
    assert np.array_equal(ds.test_x.numpy(), expect.astype(np.float32) / np.float32(255))
    assert native_size(f"folder:{tmp_path}") == (4, 4)


def test_image_folder_in_colour(tmp_path):
    written = _write_folder(tmp_path, ["a", "b"], mode="RGB", size=(2, 2), per_class=1)
    ds = load_dataset(f"folder:{tmp_path}", size=6)
    assert ds.input_shape == (3, 6, 6)
    assert np.array_equal(ds.train_x[1, :, ::3, ::3].numpy(), written[("train", "b", 0)].transpose(2, 0, 1).astype(np.float32) / np.float32(255))


def test_image_folder_refusals(tmp_path):
    with pytest.raises(DataError, match="no folder"):
        check_data_spec(f"folder:{tmp_path / 'nope'}")
    with pytest.raises(DataError, match="has no train/ sub-folder; expected DIR/train/<class>/\\*.png"):
        check_data_spec(f"folder:{tmp_path}")
    _write_folder(tmp_path, {"train": ["a", "b"], "test": ["a", "c"]})
    with pytest.raises(DataError, match=r"different classes \(only in train: \['b'\], only in test: \['c'\]\)"):
        check_data_spec(f"folder:{tmp_path}")
    other = tmp_path / "sizes"
    _write_folder(other, ["a"], size=(4, 4))
    _write_folder(other / "extra", ["b"], size=(5, 5))
    os.rename(other / "extra" / "train" / "b", other / "train" / "b")
    os.rename(other / "extra" / "test" / "b", other / "test" / "b")
    with pytest.raises(DataError, match="is 5 x 5, others are 4 x 4: all images must have one size"):
        load_dataset(f"folder:{other}")
    with pytest.raises(DataError, match="not a multiple of the 4-pixel side"):
        check_data_spec(f"folder:{other}", size=10)


def test_spec_refusals_are_typed_and_one_line():
    for spec, pattern in [("mnist", "unknown data spec"), ("cifar10:", "needs a folder"), ("digits:x", "unknown data spec"), ("", "must be a string")]:
        with pytest.raises(DataError, match=pattern) as info:
            check_data_spec(spec)
        assert "\n" not in str(info.value)
        assert isinstance(info.value, PathstatsError) and isinstance(info.value, ValueError)
    for size in (0, 12, 2.0, True):
        with pytest.raises(DataError, match="--size"):
            load_dataset("digits", size=size)


# ----------------------------------------------------------------------------- upsampling, nets


@given(n=st.integers(1, 2), c=st.integers(1, 3), side=st.integers(1, 5), k=st.integers(1, 4), seed=st.integers(0, 2**16))
def test_upsample_copies_each_pixel_k_by_k(n, c, side, k, seed):
    x = torch.rand((n, c, side, side), generator=torch.Generator().manual_seed(seed))
    y = upsample(x, side * k)
    assert y.shape == (n, c, side * k, side * k)
    for i in range(side * k):
        for j in range(side * k):
            assert torch.equal(y[:, :, i, j], x[:, :, i // k, j // k])


def test_upsample_refuses_a_fractional_factor():
    with pytest.raises(DataError, match="--size 5 is not a multiple of the 2-pixel side"):
        upsample(torch.zeros(1, 1, 2, 2), 5)


def test_registered_nets_adapt_channels_and_say_which_size_they_need():
    from pathstats import nets

    for name in nets.ARCHITECTURES:
        least = minimum_size(name, channels=1)
        for side in (least, 2 * least, 32):
            check_model_input(name, (1, side, side))
        model = nets.build(name, (1, least, least))  # one real forward pass at the smallest side
        assert model(torch.zeros(2, 1, least, least)).shape == (2, 10)
        if least > 1:
            with pytest.raises(DataError, match=f"at least {least} x {least} pixels.*--size") as info:
                check_model_input(name, (1, least - 1, least - 1))
            assert "\n" not in str(info.value)
    assert minimum_size("conv6", 1) == 17 and minimum_size("conv6-avgpool", 1) == 8


def test_a_data_set_too_large_for_memory_is_refused_before_loading():
    with pytest.raises(DataError, match="up-sampled to 32000 x 32000 takes up to .* GiB as float32, more than .*use a smaller --size"):
        load_dataset("digits", size=32000)


# ----------------------------------------------------------------------------- per-batch pipeline


def test_per_batch_upsampling_equals_the_whole_set_upsampling():
    images = load_images("digits")
    transform = BatchTransform(images.levels, factor=4)
    whole = upsample(load_dataset("digits").train_x, 32)
    for start in (0, 700, 1400):
        assert torch.equal(transform(images.train_u8[start:start + 38]), whole[start:start + 38])
    assert images.train_u8.dtype == torch.uint8 and images.native_shape == (1, 8, 8)  # no up-sampled copy kept


def test_augmentation_is_a_seeded_shift_and_flip_of_the_zero_padded_image():
    images = load_images("digits")
    u8, pad = images.train_u8[:64], 1
    transform = BatchTransform(images.levels, augment=("crop", "flip"), crop_pad=pad)
    a, b, c = transform(u8, seed=7), transform(u8, seed=7), transform(u8, seed=8)
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert torch.equal(transform(u8), images.pixels(u8))  # no seed: no augmentation (evaluation)
    padded = torch.nn.functional.pad(images.pixels(u8), (pad, pad, pad, pad))
    flips = 0
    for out, source in zip(a, padded):
        windows = [source[:, i:i + 8, j:j + 8] for i in range(2 * pad + 1) for j in range(2 * pad + 1)]
        plain = any(torch.equal(out, w) for w in windows)
        flipped = any(torch.equal(out, w.flip(-1)) for w in windows)
        assert plain or flipped
        flips += flipped and not plain
    assert 10 < flips < 54  # about half flipped (binomial(64, 1/2) within 5.5 standard errors)


def test_normalised_training_pixels_have_mean_0_and_std_1_per_channel(tmp_path):
    root = tmp_path / "cifar"
    _write_cifar(str(root), per_batch=20)
    for spec in ("digits", f"cifar10:{root}"):
        images = load_images(spec)
        train_idx, _ = images.split_validation(10)
        mean, std = channel_stats(images, train_idx)
        transform = BatchTransform(images.levels, factor=2, mean=mean, std=std)
        x = transform(images.train_u8[train_idx]).double()
        assert x.mean(dim=(0, 2, 3)).abs().max() < 1e-6
        assert (x.std(dim=(0, 2, 3), unbiased=False) - 1).abs().max() < 1e-5
        low, high = transform.bounds  # the normalised images of pixels 0 and 1
        assert torch.equal(transform(torch.zeros_like(images.train_u8[:1])), low.expand(1, -1, *x.shape[2:]))
        full = torch.full_like(images.train_u8[:1], images.levels)
        assert torch.equal(transform(full), high.expand(1, -1, *x.shape[2:]))


def test_validation_split_is_fixed_and_disjoint():
    images = load_images("digits")
    (t1, v1), (t2, v2) = images.split_validation(300), images.split_validation(300)
    assert torch.equal(v1, v2) and torch.equal(t1, t2)
    assert sorted(torch.cat([t1, v1]).tolist()) == list(range(1438))
    with pytest.raises(DataError, match="--val-split must be an integer in 0..1437"):
        images.split_validation(1438)


def test_augment_spec_is_checked():
    assert parse_augment("flip,crop") == ("crop", "flip")
    with pytest.raises(DataError, match="--augment takes"):
        parse_augment("crop,crop")
