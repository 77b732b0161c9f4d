"""What every study of a batch run is analysed and written with, and its fingerprint.

:class:`RunSettings` travels with each study task to the worker (a local
process or a Dask worker on another machine), so the worker needs nothing
but the input files: the analysis settings
(:class:`~pipeline.settings.AnalysisSettings`: rules as YAML text, the
segmenters as specs that pin each model's SHA-256) plus what only the
output needs (overlays, pseudonym key). Its :attr:`~RunSettings.fingerprint`
is stored in each study's record; a rerun with other settings redoes every
study.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass, field

from pipeline.settings import AnalysisSettings

__all__ = ["RunSettings"]


@dataclass(frozen=True)
class RunSettings:
    """Analysis and output settings shared by every study of a run.

    Attributes
    ----------
    analysis : AnalysisSettings
        Rules, forced protocol, segmenters, software version.
    overlays : bool
        Write a QA overlay PNG per analysed frame.
    key_images : bool
        Write each frame's overlay as a DICOM key image too.
    pseudonym_key : bytes or None
        HMAC key: patient name and ID are replaced by keyed hashes.
    """

    analysis: AnalysisSettings
    overlays: bool = True
    key_images: bool = False
    pseudonym_key: bytes | None = field(default=None, repr=False)

    @property
    def pseudonymize(self) -> bool:
        return self.pseudonym_key is not None

    @property
    def key_id(self) -> str:
        """A short non-secret identifier of the pseudonym key (empty without one)."""
        if self.pseudonym_key is None:
            return ""
        return hmac.new(self.pseudonym_key, b"mskus-key-id", hashlib.sha256).hexdigest()[:16]

    @property
    def fingerprint(self) -> str:
        """SHA-256 of everything that changes the outputs' content (not ``overlays``)."""
        return hashlib.sha256(f"{self.analysis.fingerprint}\0{self.key_id}".encode()).hexdigest()
