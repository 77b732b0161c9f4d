"""TID 1600 Image Library of an SR: every source image with its modality, rows and columns."""

from __future__ import annotations

from collections.abc import Sequence

import highdicom as hd
from pydicom.dataset import Dataset
from pydicom.sr.coding import Code

from pipeline.sr import codes

__all__ = ["image_library"]


def _modality_code(dataset: Dataset) -> Code:
    modality = str(dataset.get("Modality", "") or "").strip().upper()
    if not modality and str(dataset.SOPClassUID) in _ULTRASOUND_CLASSES:
        modality = "US"
    return codes.MODALITY_CODES.get(modality) or Code(modality or "OT", "DCM", modality or "Other")


_ULTRASOUND_CLASSES = frozenset(
    {"1.2.840.10008.5.1.4.1.1.6.1", "1.2.840.10008.5.1.4.1.1.6", "1.2.840.10008.5.1.4.1.1.3.1", "1.2.840.10008.5.1.4.1.1.3"}
)


def image_library(datasets: Sequence[Dataset]) -> hd.sr.ContainerContentItem:
    """TID 1600 Image Library listing every source image.

    One Image Library Group per modality (and Frame of Reference), each image
    with its Modality, Pixel Data Rows and Columns (TID 1602). Built here
    rather than by highdicom so that every ultrasound SOP class the loader
    accepts (the retired ones and Secondary Capture included) can be listed.

    Raises
    ------
    ValueError
        No datasets, or a dataset without SOP Class/Instance UID, Rows or Columns.
    """
    if not datasets:
        raise ValueError("the Image Library needs at least one image")
    rel = hd.sr.RelationshipTypeValues
    groups: dict[tuple[str, str], list[hd.sr.ImageContentItem]] = {}
    for ds in datasets:
        for keyword in ("SOPClassUID", "SOPInstanceUID", "Rows", "Columns"):
            if not ds.get(keyword):
                raise ValueError(f"image {ds.get('SOPInstanceUID', '?')} has no {keyword}")
        modality = _modality_code(ds)
        entry = hd.sr.ImageContentItem(
            name=codes.SOURCE,
            referenced_sop_class_uid=str(ds.SOPClassUID),
            referenced_sop_instance_uid=str(ds.SOPInstanceUID),
            relationship_type=rel.CONTAINS,
        )
        entry.ContentSequence = hd.sr.ContentSequence(
            [
                hd.sr.CodeContentItem(name=codes.MODALITY, value=modality, relationship_type=rel.HAS_ACQ_CONTEXT),
                hd.sr.NumContentItem(
                    name=codes.PIXEL_DATA_ROWS, value=int(ds.Rows), unit=codes.PIXELS,
                    relationship_type=rel.HAS_ACQ_CONTEXT,
                ),
                hd.sr.NumContentItem(
                    name=codes.PIXEL_DATA_COLUMNS, value=int(ds.Columns), unit=codes.PIXELS,
                    relationship_type=rel.HAS_ACQ_CONTEXT,
                ),
            ]
        )
        key = (modality.value, str(ds.get("FrameOfReferenceUID", "") or ""))
        groups.setdefault(key, []).append(entry)
    library = hd.sr.ContainerContentItem(name=codes.IMAGE_LIBRARY, relationship_type=rel.CONTAINS)
    library.ContentSequence = hd.sr.ContentSequence()
    for (_, frame_of_reference), entries in groups.items():
        group = hd.sr.ContainerContentItem(name=codes.IMAGE_LIBRARY_GROUP, relationship_type=rel.CONTAINS)
        items: list[hd.sr.ContentItem] = []
        if frame_of_reference:
            items.append(
                hd.sr.UIDRefContentItem(
                    name=codes.FRAME_OF_REFERENCE_UID, value=frame_of_reference, relationship_type=rel.HAS_ACQ_CONTEXT
                )
            )
        items.extend(entries)
        group.ContentSequence = hd.sr.ContentSequence(items)
        library.ContentSequence.append(group)
    return library
