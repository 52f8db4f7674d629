"""Training-image files: PNG (8-bit grey), NPY, HDF5 (dataset ``image``) and GSLIB/SGeMS ASCII grids.

Training images are binary facies maps (channel = 1, matrix = 0); sizes are checked from each
file's header before any pixel is decoded. Sampling crops from them is :mod:`geoinv.prior.images`.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from .._atomic import atomic_hdf5, atomic_path
from .._typing import PathType
from .._validation import check_real_dtype, require_file
from ..errors import ConfigError, FileFormatError

__all__ = ["IMAGE_SUFFIXES", "MAX_GSLIB_VARIABLES", "MIN_FACIES_FRACTION", "POLARITIES", "default_polarity",
           "read_image", "write_image"]

_SUFFIXES = {".png": "png", ".npy": "npy", ".h5": "hdf5", ".hdf5": "hdf5", ".gslib": "gslib",
             ".sgems": "gslib", ".dat": "gslib", ".txt": "gslib"}


#: suffixes read and written as training images
IMAGE_SUFFIXES = tuple(sorted(_SUFFIXES))


def _format_of(path: Path, fmt: str | None) -> str:
    if fmt is not None:
        return fmt.lower()
    try:
        return _SUFFIXES[path.suffix.lower()]
    except KeyError:
        raise FileFormatError(
            f"cannot tell the format of {path.name!r} from its suffix; use one of "
            f"{sorted(_SUFFIXES)} or pass fmt='png'|'npy'|'hdf5'|'gslib'"
        ) from None


def _binarize(image: np.ndarray, threshold: float | None, path: Path) -> np.ndarray:
    """0/1 array: 1 for the high values of the file."""
    image = np.asarray(image)
    if image.dtype == bool:  # a boolean map is already binary
        image = image.astype(np.uint8)
    check_real_dtype(image, f"{path.name}: pixel values", FileFormatError)
    image = image.astype(np.float64)
    if image.ndim != 2:
        raise FileFormatError(f"{path.name}: a training image must be 2-D, got shape {image.shape}")
    if not np.isfinite(image).all():
        raise FileFormatError(f"{path.name}: the image contains NaN/inf values")
    values = np.unique(image)
    if threshold is None:
        if values.size <= 2 and set(values.tolist()) <= {0.0, 1.0}:
            return image.astype(np.uint8)
        if values.size <= 2 and set(values.tolist()) <= {0.0, 255.0}:
            return (image > 127).astype(np.uint8)
        raise FileFormatError(
            f"{path.name}: the image is not binary (values {values[:5].tolist()}...); "
            "pass threshold=<value> to map values above it to channel (1)"
        )
    return (image > threshold).astype(np.uint8)


#: GSLIB headers naming more variables than this are taken for a damaged file
MAX_GSLIB_VARIABLES = 1000


def _read_gslib(path: Path) -> np.ndarray:
    """Read a GSLIB/SGeMS ASCII grid whose title line holds ``nx ny nz``."""
    with open(path) as handle:
        title = handle.readline().split()
        try:
            n_var = int(handle.readline().split()[0])
        except (IndexError, ValueError):
            raise FileFormatError(f"{path.name}: line 2 must hold the number of variables") from None
        if not 1 <= n_var <= MAX_GSLIB_VARIABLES:
            raise FileFormatError(f"{path.name}: line 2 claims {n_var} variables; a GSLIB file names 1 to "
                                  f"{MAX_GSLIB_VARIABLES} (one per line after it). Is the header damaged?")
        for index in range(n_var):
            if not handle.readline():
                raise FileFormatError(f"{path.name}: the header names {n_var} variables but the file ends "
                                      f"after {index}")
        values = np.loadtxt(handle, ndmin=2)[:, 0]
    try:
        dims = [int(t) for t in title[:3]]
    except ValueError:
        dims = []
    if len(dims) >= 2 and int(np.prod(dims)) == values.size:
        nx, ny = dims[0], dims[1]
    else:
        raise FileFormatError(
            f"{path.name}: the title line must start with the grid size 'nx ny [nz]' "
            f"matching the {values.size} values (it says {' '.join(title[:3])!r})"
        )
    # GSLIB order: x fastest, then y upward; rows of our image go downward.
    return values.reshape(ny, nx)[::-1]


#: which pixels are channels: dark/low values or light/high values of the file
POLARITIES = ("dark", "light", "low", "high")
#: the minority facies must cover at least this fraction of a training image
MIN_FACIES_FRACTION = 0.01


def default_polarity(kind: str) -> str:
    """Channels are dark in PNG images (as printed) and the value 1 in numeric formats."""
    return "dark" if kind == "png" else "high"


def read_image(path: PathType, fmt: str | None = None, threshold: float | None = None,
               channels: str | None = None) -> np.ndarray:
    """Read a binary training image.

    Parameters
    ----------
    path : path-like
        File to read.
    fmt : {'png', 'npy', 'hdf5', 'gslib'}, optional
        Format; guessed from the suffix if omitted.
    threshold : float, optional
        For non-binary images: values above it become the high facies. Without it a
        non-binary image raises :class:`~geoinv.errors.FileFormatError`.
    channels : {'dark', 'light', 'low', 'high'}, optional
        Which pixels are channels: ``'dark'``/``'low'`` (low grey or numeric
        values) or ``'light'``/``'high'``. Default: ``'dark'`` for PNG (as in
        printed training images), ``'high'`` (channel = 1) for NPY, HDF5 and GSLIB.

    Returns
    -------
    numpy.ndarray of uint8, shape (rows, cols), rows downward; 1 = channel.

    Raises
    ------
    FileFormatError
        Unreadable, non-binary (without ``threshold``), transparent, or (nearly)
        one facies only: fewer than 1 % of the pixels in the minority facies.

    Warns
    -----
    GeoinvWarning
        When more than half of the pixels are channels: channels are the
        minority facies of channelized images, so the polarity may be inverted.
    """
    path = Path(path)
    require_file(path, "training image", FileFormatError)
    kind = _format_of(path, fmt)
    polarity = default_polarity(kind) if channels is None else channels
    if polarity not in POLARITIES:
        raise ConfigError(f"channels must be 'dark', 'light', 'low' or 'high' (which pixels are channels), "
                          f"got {channels!r}")
    binary = _binarize(_read_raw(path, kind), threshold, path)
    if polarity in ("dark", "low"):
        binary = 1 - binary
    _check_facies(binary, path, polarity, channels is None)
    return binary


def _check_facies(binary: np.ndarray, path: Path, polarity: str, defaulted: bool) -> None:
    import warnings

    from ..errors import GeoinvWarning

    proportion = float(binary.mean())
    if min(proportion, 1 - proportion) < MIN_FACIES_FRACTION:
        raise FileFormatError(
            f"{path.name}: {100 * proportion:.2f} % of the pixels are channels: the image holds (nearly) one "
            f"facies only, a constant image a VAE cannot learn channels from. Check the file (and the threshold)")
    if proportion > 0.5:
        option = "light" if polarity in ("dark", "low") else "dark"
        warnings.warn(
            f"{path.name}: {100 * proportion:.0f} % of the pixels are channels (read with channels="
            f"{polarity!r}{' (the default)' if defaulted else ''}); channels are usually the minority facies. "
            f"Is the polarity inverted? If so pass channels={option!r} (geoinv train-vae --channels {option})",
            GeoinvWarning, stacklevel=3)


def _check_declared_size(path: Path, shape) -> None:
    """Refuse an image whose header states more pixels than geoinv generates, before it is decoded."""
    from ..prior.channels import MAX_IMAGE_PIXELS

    pixels = int(np.prod([int(n) for n in shape], dtype=np.float64))
    if pixels > MAX_IMAGE_PIXELS:
        raise FileFormatError(f"{path.name}: its header states {tuple(int(n) for n in shape)} = {pixels:.3g} "
                              f"values, more than {MAX_IMAGE_PIXELS:.0e} (geoinv.prior.channels.MAX_IMAGE_PIXELS; "
                              "a 2500 × 2500 image has 6.25e6); crop or downsample it first")


def _read_raw(path: Path, kind: str) -> np.ndarray:
    """The file's values as an array, low = dark (0 … 255 for PNG); sizes are checked before decoding."""
    try:
        if kind == "png":
            import matplotlib.image as mpimg
            from PIL import Image

            with Image.open(path) as header:  # reads the header only
                _check_declared_size(path, (*header.size, len(header.getbands())))

            data = mpimg.imread(path)
            if data.ndim == 3:
                if data.shape[-1] == 4 and (data[..., 3] < 1).any():
                    raise FileFormatError(
                        f"{path.name}: {100 * float((data[..., 3] < 1).mean()):.0f} % of the pixels are "
                        "transparent (alpha < 1), so their facies is undefined; flatten the image onto a "
                        "background first")
                data = data[..., :3].mean(axis=-1)
            if data.dtype.kind == "f":
                data = np.round(data * 255)
        elif kind == "npy":
            with open(path, "rb") as handle:  # the header's shape, before any data is read
                version = np.lib.format.read_magic(handle)
                read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                               else np.lib.format.read_array_header_2_0)
                _check_declared_size(path, read_header(handle)[0])
            data = np.load(path, allow_pickle=False)
        elif kind == "hdf5":
            import h5py

            with h5py.File(path, "r") as handle:
                if "image" not in handle:
                    raise FileFormatError(f"{path.name}: no dataset named 'image'")
                _check_declared_size(path, handle["image"].shape)
                data = handle["image"][()]
        elif kind == "gslib":
            data = _read_gslib(path)
        else:
            raise FileFormatError(f"unknown training-image format {kind!r}")
    except FileFormatError:
        raise
    except Exception as exc:  # a corrupt file: report which, and why
        raise FileFormatError(f"cannot read {path.name} as {kind}: {exc}") from exc
    return data


def write_image(path: PathType, image: np.ndarray, fmt: str | None = None, metadata: dict | None = None,
                channels: str | None = None) -> None:
    """Write a binary image (1 = channel) atomically; HDF5 stores ``metadata`` as JSON attributes.

    ``channels`` (PNG only): ``'dark'`` (default, as printed) or ``'light'``
    channel pixels; read the file back with the same value.
    """
    path = Path(path)
    kind = _format_of(path, fmt)
    if channels not in (None, "dark", "light"):
        raise ConfigError(f"channels must be 'dark' or 'light' (PNG channel pixels), got {channels!r}")
    if channels is not None and kind != "png":
        raise ConfigError(f"channels applies to PNG images only; {path.name} stores channels as the value 1")
    binary = (np.asarray(image) > 0.5).astype(np.uint8)
    if kind == "hdf5":
        with atomic_hdf5(path) as out:
            out.create_dataset("image", data=binary, compression="gzip", compression_opts=9)
            out.attrs["metadata"] = json.dumps(metadata or {})
        return
    with atomic_path(path) as tmp_name:
        if kind == "png":
            import matplotlib.image as mpimg

            grey = 255 * binary if channels == "light" else 255 - 255 * binary
            mpimg.imsave(tmp_name, grey, cmap="gray", vmin=0, vmax=255, format="png")
        elif kind == "npy":
            with open(tmp_name, "wb") as out:
                np.save(out, binary)
        elif kind == "gslib":
            rows, cols = binary.shape
            with open(tmp_name, "w") as out:
                out.write(f"{cols} {rows} 1\n1\nfacies\n")
                np.savetxt(out, binary[::-1].ravel(), fmt="%d")
        else:
            raise FileFormatError(f"unknown training-image format {kind!r}")
