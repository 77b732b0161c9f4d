"""mskus analysis library: musculoskeletal ultrasound DICOM in, measurements out.

The library is pure analysis: loading and calibration of ultrasound DICOM,
protocol selection, segmentation, measurements and Structured Report
writing. It never opens a network connection; the storage node in
:mod:`dicom_node` calls it.
"""

from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as _version

try:
    __version__ = _version("mskus")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0+unknown"

__all__ = ["__version__"]
