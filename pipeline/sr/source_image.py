"""The image instance an SR measurement group references (SOP class and instance, frames, SCOORD region)."""

from __future__ import annotations

from dataclasses import dataclass

import highdicom as hd
import numpy as np
from pydicom.dataset import Dataset

__all__ = ["SourceImage"]

_US_SINGLE_FRAME = "1.2.840.10008.5.1.4.1.1.6.1"
_US_MULTIFRAME = "1.2.840.10008.5.1.4.1.1.3.1"


@dataclass(frozen=True)
class SourceImage:
    """The image instance a measurement was made on.

    Attributes
    ----------
    sop_class_uid, sop_instance_uid : str
        Identity of the source instance.
    number_of_frames : int
        Frames in the instance.
    multiframe : bool
        The instance is multi-frame (its IOD has Number of Frames): frame
        numbers are then referenced, even for a one-frame instance.
    label : str
        Short human-readable name (file name, else SOP Instance UID) used in
        tracking identifiers and TEXT items.
    """

    sop_class_uid: str
    sop_instance_uid: str
    number_of_frames: int = 1
    multiframe: bool = False
    label: str = ""

    def __post_init__(self) -> None:
        if not self.sop_class_uid or not self.sop_instance_uid:
            raise ValueError("a source image needs a SOP Class UID and a SOP Instance UID")
        if self.number_of_frames < 1:
            raise ValueError(f"number_of_frames must be >= 1, got {self.number_of_frames}")

    @classmethod
    def from_dataset(cls, dataset: Dataset, *, label: str = "") -> SourceImage:
        """Source reference from an image dataset (header only is enough)."""
        try:
            frames = int(dataset.get("NumberOfFrames", 1) or 1)
        except (TypeError, ValueError):
            frames = 1
        return cls(
            sop_class_uid=str(dataset.SOPClassUID),
            sop_instance_uid=str(dataset.SOPInstanceUID),
            number_of_frames=max(1, frames),
            multiframe="NumberOfFrames" in dataset or frames > 1,
            label=label or str(dataset.SOPInstanceUID),
        )

    @property
    def is_multiframe(self) -> bool:
        return self.multiframe or self.number_of_frames > 1

    def frame_numbers(self, frame_number: int | None) -> list[int] | None:
        """Referenced Frame Number value for ``frame_number`` (``None`` for single-frame images)."""
        if frame_number is None or not self.is_multiframe:
            return None
        if not 1 <= frame_number <= self.number_of_frames:
            raise ValueError(
                f"frame number {frame_number} outside 1..{self.number_of_frames} of {self.label or self.sop_instance_uid}"
            )
        return [int(frame_number)]

    def image_region(self, graphic_data: np.ndarray, frame_number: int | None) -> hd.sr.ImageRegion:
        """Image Region SCOORD (POLYLINE) on this image and frame.

        highdicom looks the SOP class up in its table of current IODs; the
        retired ultrasound classes the loader also accepts are not in it, so
        for those the region is built with the current equivalent class and
        the reference is then set to the image's own class.
        """
        def build(sop_class_uid: str) -> hd.sr.ImageRegion:
            return hd.sr.ImageRegion(
                graphic_type=hd.sr.GraphicTypeValues.POLYLINE,
                graphic_data=graphic_data,
                source_image=hd.sr.SourceImageForRegion(
                    referenced_sop_class_uid=sop_class_uid,
                    referenced_sop_instance_uid=self.sop_instance_uid,
                    referenced_frame_numbers=self.frame_numbers(frame_number),
                ),
            )

        try:
            return build(self.sop_class_uid)
        except KeyError:  # SOP class unknown to highdicom's IOD table
            region = build(_US_MULTIFRAME if self.is_multiframe else _US_SINGLE_FRAME)
            region.ContentSequence[0].ReferencedSOPSequence[0].ReferencedSOPClassUID = self.sop_class_uid
            return region

    def for_group(self, frame_number: int | None) -> hd.sr.SourceImageForMeasurementGroup:
        return hd.sr.SourceImageForMeasurementGroup(
            referenced_sop_class_uid=self.sop_class_uid,
            referenced_sop_instance_uid=self.sop_instance_uid,
            referenced_frame_numbers=self.frame_numbers(frame_number),
        )
