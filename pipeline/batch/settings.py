"""What every study of a run is analysed with, and its fingerprint.

:class:`RunSettings` travels with each study task to the worker (a local
process or a Dask worker on another machine), so the worker needs nothing
but the input files: the protocol rules go as YAML text, not as a path, and
the nerve segmenter chosen where the run is set up (``configs/segmentation.yaml``
and its environment overrides, as for ``mskus analyze``) goes as a
:class:`~pipeline.segmentation.factory.SegmenterSpec` that pins the model's
SHA-256. Its :attr:`~RunSettings.fingerprint` is stored in each study's
record; a rerun with other settings (rules, forced protocol, segmenter or
model, pseudonym key, software version) redoes every study.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from pipeline import __version__
from pipeline.errors import UsageError
from pipeline.protocols import DEFAULT_PROTOCOLS_PATH, Protocol, ProtocolRules
from pipeline.segmentation.factory import SegmenterSpec

__all__ = ["RunSettings", "load_rules_text", "rules_from_text"]


def load_rules_text(path: str | Path | None) -> tuple[str, str]:
    """Text and display name of the protocol rules file, validated.

    Raises
    ------
    UsageError
        The file cannot be read or is not valid rules YAML (one line).
    """
    source = Path(path) if path is not None else DEFAULT_PROTOCOLS_PATH
    try:
        text = source.read_text(encoding="utf-8")
    except OSError as exc:
        raise UsageError(f"cannot read protocol rules {source}: {exc.strerror or exc}") from None
    rules_from_text(text, source=str(source))
    return text, str(source)


def rules_from_text(text: str, *, source: str = "<rules>") -> ProtocolRules:
    """Parse and validate protocol rules from YAML text (:class:`UsageError` on problems)."""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        first = str(exc).splitlines()[0] if str(exc) else "invalid YAML"
        raise UsageError(f"{source}: invalid YAML: {first}") from None
    return ProtocolRules.from_mapping(data, source=source)


def configured_muscle_boundaries() -> str:
    """The configured muscle boundary finder of this process, as the SR states it."""
    from pipeline.measurements.muscle import describe_boundaries
    from pipeline.segmentation.factory import default_boundary_finder

    return describe_boundaries(default_boundary_finder())


@dataclass(frozen=True)
class RunSettings:
    """Analysis settings shared by every study of a run.

    Attributes
    ----------
    rules_text : str
        Protocol rules YAML (validated).
    protocol : str or None
        Forced protocol (``nerve`` / ``muscle``), else chosen by the rules.
    segmenter : SegmenterSpec
        The nerve segmenter every worker builds.
    muscle_boundaries : str
        How the muscle boundary bands are found where the run is set up
        (:func:`pipeline.measurements.muscle.describe_boundaries`: the learned
        model's version and hash, or the classical search); a worker whose
        own finder differs refuses the run.
    overlays : bool
        Write a QA overlay PNG per analysed frame.
    pseudonym_key : bytes or None
        HMAC key: patient name and ID are replaced by keyed hashes.
    software_version : str
        mskus version of the coordinator; a worker with another version refuses.
    """

    rules_text: str
    protocol: str | None = None
    segmenter: SegmenterSpec = field(default_factory=SegmenterSpec)
    muscle_boundaries: str = field(default_factory=lambda: configured_muscle_boundaries())
    overlays: bool = True
    pseudonym_key: bytes | None = field(default=None, repr=False)
    software_version: str = __version__

    def __post_init__(self) -> None:
        if self.protocol is not None:
            Protocol(self.protocol)  # ValueError on anything else

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
        """SHA-256 of everything that changes the analysis output (not ``overlays``)."""
        payload = json.dumps(
            {
                "version": self.software_version,
                "rules": hashlib.sha256(self.rules_text.encode("utf-8")).hexdigest(),
                "protocol": self.protocol,
                "segmenter": self.segmenter.key,
                "muscle_boundaries": self.muscle_boundaries,
                "key": self.key_id,
            },
            sort_keys=True,
        )
        return hashlib.sha256(payload.encode("utf-8")).hexdigest()

    def rules(self) -> ProtocolRules:
        """The parsed rules (cached per process by the worker)."""
        return rules_from_text(self.rules_text)
