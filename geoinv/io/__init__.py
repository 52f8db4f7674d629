"""File formats: HDF5 surveys and results, pyGIMLi data files and meshes, pick files in columns.

Every geoinv format, its version and its reader and writer: ``docs/formats.md``.
"""

from .columns import read_column_survey, write_column_survey
from .files import read_survey, write_survey
from .hdf5 import write_result

__all__ = ["read_column_survey", "read_survey", "write_column_survey", "write_result", "write_survey"]
