"""File formats: HDF5 surveys and results."""

from .hdf5 import read_survey, write_result, write_survey

__all__ = ["read_survey", "write_result", "write_survey"]
