import numpy as np
import pytest
import torch

from geoinv import ConfigError, FileFormatError
from geoinv.prior import (
    ChannelConfig,
    PatchSampler,
    channel_statistics,
    channelized_image,
    image_hash,
    read_image,
    write_image,
)

from .helpers import refusal_under_memory_limit


@pytest.fixture(scope="module")
def image():
    return channelized_image((300, 260), ChannelConfig(width_mean=8, wavelength_min=60, wavelength_max=120),
                             seed=7)


def test_generator_reaches_target_proportion_and_is_seeded(image):
    stats = channel_statistics(image)
    assert 0.26 <= stats["proportion"] < 0.32
    np.testing.assert_array_equal(image, channelized_image(
        (300, 260), ChannelConfig(width_mean=8, wavelength_min=60, wavelength_max=120), seed=7))
    assert not np.array_equal(image, channelized_image((300, 260), seed=8))
    assert set(np.unique(image)) == {0, 1}


def test_channels_follow_main_direction():
    horizontal = channelized_image((200, 200), ChannelConfig(direction_deg=0.0, width_mean=6), seed=1)
    vertical = channelized_image((200, 200), ChannelConfig(direction_deg=90.0, width_mean=6), seed=1)
    # continuity is longer along the channels than across them
    def lag_agreement(img, axis):
        return np.mean(img == np.roll(img, 10, axis=axis))
    assert lag_agreement(horizontal, 1) > lag_agreement(horizontal, 0)
    assert lag_agreement(vertical, 0) > lag_agreement(vertical, 1)


def test_thickness_statistic():
    img = np.zeros((20, 5), dtype=np.uint8)
    img[3:7] = 1
    img[10:12] = 1
    assert channel_statistics(img)["mean_vertical_thickness"] == pytest.approx(3.0)


@pytest.mark.parametrize("bad", [{"proportion": 1.2}, {"width_mean": 0}, {"wavelength_min": 500}])
def test_channel_config_validation(bad):
    with pytest.raises(ConfigError):
        ChannelConfig(**bad)


@pytest.mark.parametrize("suffix", [".png", ".npy", ".h5", ".gslib"])
def test_roundtrip_every_format(tmp_path, image, suffix):
    path = tmp_path / f"ti{suffix}"
    write_image(path, image, metadata={"seed": 7})
    np.testing.assert_array_equal(read_image(path), image)
    assert image_hash(read_image(path)) == image_hash(image)


def test_non_binary_image_needs_threshold(tmp_path):
    path = tmp_path / "grey.npy"
    np.save(path, np.linspace(0, 1, 20).reshape(4, 5))
    with pytest.raises(FileFormatError, match="threshold"):
        read_image(path)
    assert read_image(path, threshold=0.5).sum() == 10


def test_unreadable_files(tmp_path):
    with pytest.raises(FileFormatError, match="does not exist"):
        read_image(tmp_path / "missing.h5")
    corrupt = tmp_path / "corrupt.h5"
    corrupt.write_bytes(b"not hdf5")
    with pytest.raises(FileFormatError, match="cannot read"):
        read_image(corrupt)
    with pytest.raises(FileFormatError, match="suffix"):
        read_image(corrupt.rename(tmp_path / "image.xyz"))


def test_patch_sampler_keeps_heldout_rows_apart(image):
    sampler = PatchSampler(image, (32, 24), holdout_fraction=0.3)
    generator = torch.Generator().manual_seed(0)
    train = sampler.train_batch(50, generator)
    test = sampler.test_batch(50, generator)
    assert train.shape == (50, 32, 24) and test.shape == (50, 32, 24)
    # every crop is an exact window of the image, from its own row band
    top = sampler.test_rows[0]
    held_out = torch.as_tensor(image[top:]).float()
    windows = held_out.unfold(0, 32, 1).unfold(1, 24, 1).reshape(-1, 32, 24)
    assert all(((windows - crop).abs().sum((1, 2)) == 0).any() for crop in test[:5])
    trainable = torch.as_tensor(image[:top]).float().unfold(0, 32, 1).unfold(1, 24, 1).reshape(-1, 32, 24)
    assert all(((trainable - crop).abs().sum((1, 2)) == 0).any() for crop in train[:5])


def test_patch_sampler_rejects_patches_that_do_not_fit(image):
    with pytest.raises(ConfigError, match="does not fit"):
        PatchSampler(image, (290, 24), holdout_fraction=0.1)


def _png_header_only(path, width: int, height: int) -> None:
    """A PNG whose header states ``width × height`` grey pixels and that holds no pixel data."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IEND", b""))


@pytest.mark.parametrize("suffix", [".png", ".npy"])
def test_image_headers_stating_huge_sizes_are_refused_before_decoding(tmp_path, suffix):
    """A 62 kB PNG took 4.8 GB before it was refused; the header's size is now checked first. Read in a
    child process under a 2 GB address-space limit, so a regression fails instead of taking the memory."""
    path = tmp_path / f"bomb{suffix}"
    if suffix == ".png":
        _png_header_only(path, 12_000, 12_000)
    else:
        with open(path, "wb") as handle:
            np.lib.format.write_array_header_1_0(handle, {"descr": "<f8", "fortran_order": False,
                                                          "shape": (12_000, 12_000)})
    refused = refusal_under_memory_limit("read_image(sys.argv[1])", path, gib=2,
                                         imports="from geoinv.prior.images import read_image")
    assert f"refused: bomb{suffix}" in refused and "1.44e+08" in refused
