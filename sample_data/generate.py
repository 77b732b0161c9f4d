"""Deterministic generator of synthetic musculoskeletal ultrasound DICOM studies.

The generator itself lives in the :mod:`sample_data.phantoms` package (speckle
and B-mode formation, nerve and muscle phantoms, colour Doppler, DICOM writing,
the bundled set and its manifest); this script is its command-line entry point
and keeps the public names importable from ``sample_data.generate``.

Run ``.venv/bin/python sample_data/generate.py [--out DIR]`` to (re)create the
bundled sample data; the output is byte-identical on every run.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Sequence

if not __package__:
    # Run as a script (``python sample_data/generate.py``) or imported as ``generate`` with sample_data/ on
    # sys.path (training, benchmarks): make the repository root importable for ``sample_data.phantoms``.
    _REPO = str(Path(__file__).resolve().parents[1])
    if _REPO not in sys.path:
        sys.path.append(_REPO)

from sample_data.phantoms.bmode import SUPERSAMPLE  # noqa: E402, F401
from sample_data.phantoms.dicom import (  # noqa: E402
    ULTRASOUND_IMAGE_STORAGE,
    ULTRASOUND_MULTIFRAME_IMAGE_STORAGE,
    EquipmentInfo,
    PatientInfo,
    SeriesInfo,
    StudyInfo,
    UltrasoundRegion,
    deterministic_uid,
    read_luma_frames,
    tissue_region,
    write_ultrasound_dicom,
)
from sample_data.phantoms.doppler import (  # noqa: E402, F401
    DOPPLER_PRF_HZ,
    doppler_palette,
    paint_color_doppler,
    rgb_to_palette,
)
from sample_data.phantoms.doppler_nerve import (  # noqa: E402
    make_doppler_nerve_case,
    write_doppler_nerve_file,
)
from sample_data.phantoms.echogenicity import (  # noqa: E402
    contour_mask,
    frame_luma,
    nerve_echogenicity,
)
from sample_data.phantoms.frame import (  # noqa: E402
    FRAME_SHAPE,
    compose_frame,
    truth_to_frame,
)
from sample_data.phantoms.muscle import (  # noqa: E402
    muscle_echogenicity,
    muscle_roi_mask,
    render_muscle_scene,
    sample_muscle_scene,
)
from sample_data.phantoms.nerve import (  # noqa: E402
    render_nerve_cine,
    render_nerve_scene,
    sample_nerve_scene,
)
from sample_data.phantoms.sample_set import (  # noqa: E402
    LOG,
    generate_sample_data,
)
from sample_data.phantoms.scenes import (  # noqa: E402
    Acoustics,
    Band,
    Ellipse,
    MuscleScene,
    NerveScene,
    sample_acoustics,
)

__all__ = [
    "FRAME_SHAPE",
    "ULTRASOUND_IMAGE_STORAGE",
    "ULTRASOUND_MULTIFRAME_IMAGE_STORAGE",
    "Acoustics",
    "Band",
    "Ellipse",
    "NerveScene",
    "MuscleScene",
    "UltrasoundRegion",
    "PatientInfo",
    "StudyInfo",
    "SeriesInfo",
    "EquipmentInfo",
    "sample_acoustics",
    "sample_nerve_scene",
    "sample_muscle_scene",
    "render_nerve_scene",
    "render_nerve_cine",
    "render_muscle_scene",
    "compose_frame",
    "paint_color_doppler",
    "doppler_palette",
    "rgb_to_palette",
    "make_doppler_nerve_case",
    "write_doppler_nerve_file",
    "truth_to_frame",
    "tissue_region",
    "frame_luma",
    "nerve_echogenicity",
    "contour_mask",
    "muscle_roi_mask",
    "muscle_echogenicity",
    "write_ultrasound_dicom",
    "read_luma_frames",
    "deterministic_uid",
    "generate_sample_data",
    "main",
]


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point: ``python sample_data/generate.py [--out DIR]``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent,
                        help="output folder (default: the folder of this script)")
    parser.add_argument("--only", nargs="*", default=None, help="generate only these file stems")
    parser.add_argument("-v", "--verbose", action="store_true", help="log every file")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(message)s")
    entries = generate_sample_data(args.out, args.only)
    LOG.info("%d files in %s", len(entries), args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
