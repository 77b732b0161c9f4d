"""Where the ``mskus`` command loads its settings: once, at the start of a command, then passed down.

Every command that analyses takes the same three options (``--rules``,
``--segmentation``, ``--protocol``) and turns them into one validated
:class:`~pipeline.settings.AnalysisSettings`; a bad file, key or value is a
one-line error naming it (exit 2), never a traceback, and nothing below
reads a configuration file again.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

from pipeline.protocols import Protocol
from pipeline.reference import ReferenceTables, load_reference_tables
from pipeline.settings import AnalysisSettings, load_analysis_settings

__all__ = ["ReferenceSettings", "add_analysis_options", "add_reference_options", "analysis_settings", "reference_settings"]


def add_analysis_options(
    parser: argparse.ArgumentParser, *, protocol: bool = True, rules_flags: tuple[str, ...] = ("--rules",)
) -> None:
    """``--rules``, ``--segmentation`` (and ``--protocol``) on a command's parser.

    ``rules_flags``: the option names of the rules file (``mskus batch`` also
    accepts its older ``--config``).
    """
    if protocol:
        parser.add_argument(
            "--protocol", choices=[p.value for p in Protocol], default=None, help="force a protocol instead of the rules"
        )
    parser.add_argument(
        *rules_flags, dest="rules", type=Path, default=None, metavar="YAML",
        help="protocol rules (default: the shipped configs/protocols.yaml)",
    )
    parser.add_argument(
        "--segmentation", type=Path, default=None, metavar="YAML",
        help="nerve segmenter and muscle boundary settings (default: $MSKUS_SEGMENTATION_CONFIG, "
        "else the shipped configs/segmentation.yaml)",
    )
    parser.add_argument(
        "--reference", action="append", type=Path, default=[], metavar="YAML",
        help="a clinic's reference table; replaces the shipped table of its kind (repeatable; configs/reference/)",
    )
    parser.add_argument(
        "--preset", default="", metavar="NAME",
        help="the scanner preset the images were taken with (z-score models that name one apply only with it)",
    )


def analysis_settings(args: argparse.Namespace) -> AnalysisSettings:
    """The command's analysis settings from its options (:class:`~pipeline.errors.UsageError` when invalid)."""
    return load_analysis_settings(
        rules=getattr(args, "rules", None),
        segmentation=getattr(args, "segmentation", None),
        protocol=getattr(args, "protocol", None),
        reference=getattr(args, "reference", None) or (),
        preset=getattr(args, "preset", "") or "",
    )


@dataclass(frozen=True)
class ReferenceSettings:
    """The reference tables and scanner preset of a command that judges values but does not analyse.

    Attributes
    ----------
    reference : ReferenceTables
        The shipped tables, each kind replaced by a clinic's own where given.
    preset : str
        The scanner preset (z-score models that name one apply only with it).
    """

    reference: ReferenceTables
    preset: str = ""


def add_reference_options(parser: argparse.ArgumentParser) -> None:
    """``--reference`` (repeatable) and ``--preset`` on a command's parser, as the analysing commands have them."""
    parser.add_argument(
        "--reference", action="append", type=Path, default=[], metavar="YAML",
        help="a clinic's reference table; replaces the shipped table of its kind (repeatable; configs/reference/); "
        "use the tables the analysis used",
    )
    parser.add_argument(
        "--preset", default="", metavar="NAME",
        help="the scanner preset the images were taken with (z-score models that name one apply only with it)",
    )


def reference_settings(args: argparse.Namespace) -> ReferenceSettings:
    """The command's reference tables and preset (:class:`~pipeline.errors.UsageError` naming a bad file or row)."""
    tables = load_reference_tables([Path(p) for p in getattr(args, "reference", None) or ()])
    return ReferenceSettings(reference=tables, preset=" ".join((getattr(args, "preset", "") or "").split()))
