"""Locations of the artifacts that ship inside the package."""

from __future__ import annotations

from pathlib import Path

DATA_DIR = Path(__file__).resolve().parent / "data"
DEFAULT_TRAINING_IMAGE = DATA_DIR / "channels_2500.h5"
DEFAULT_VAE = DATA_DIR / "default_vae.pt"
