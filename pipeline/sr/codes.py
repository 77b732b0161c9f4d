"""Coded concepts used in mskus Structured Reports (CONTRACT.md section 5).

Every code written by :mod:`pipeline.sr` is defined here, once. Standard codes
(SCT, DCM, LN, UCUM, UMLS) were checked against the DICOM content mapping
resource as shipped in pydicom's concept dictionary (``pydicom.sr.codedict``).

Anatomic sites for which no SNOMED CT code could be verified (most named
peripheral nerves and limb muscles) use the private coding scheme
:data:`LOCAL_SCHEME` (``"99MSKUS"``; by DICOM convention, private scheme
designators start with ``"99"``). The scheme is declared in the SR's Coding
Scheme Identification Sequence (:func:`local_coding_scheme`), so a reader can
tell that those codes are local.
"""

from __future__ import annotations

import hashlib
import re
import uuid
from collections.abc import Mapping
from types import MappingProxyType

from highdicom.coding_schemes import CodingSchemeIdentificationItem
from pydicom.sr.coding import Code

from pipeline.protocols import Laterality

__all__ = [
    "AREA",
    "CALIBRATION_NOTE",
    "COLOUR_FLOW",
    "DERIVATION",
    "DEVICE",
    "DEVICE_OBSERVER_UID",
    "DIAGNOSTIC_ULTRASONOGRAPHY",
    "ECHOGENICITY",
    "FAILED_IMAGE",
    "FINDING",
    "FINDING_SITE",
    "FRAME_OF_REFERENCE_UID",
    "IMAGE_LIBRARY",
    "IMAGE_LIBRARY_GROUP",
    "IMAGE_REGION",
    "IMAGING_MEASUREMENTS",
    "IMAGING_MEASUREMENT_REPORT",
    "LATERALITY",
    "LATERALITY_CODES",
    "LOCAL_SCHEME",
    "MAJOR_AXIS",
    "MEAN",
    "MEASUREMENT_GROUP",
    "MEDIAN",
    "MINOR_AXIS",
    "MODALITY",
    "MODALITY_CODES",
    "MM",
    "MM2",
    "NERVE",
    "NOT_MEASURED_REASON",
    "NO_UNITS",
    "PERCENT",
    "PERIMETER",
    "PIXELS",
    "PIXEL_DATA_COLUMNS",
    "PIXEL_DATA_ROWS",
    "QUALITATIVE_EVALUATIONS",
    "SITE_CODES",
    "SKELETAL_MUSCLE",
    "SOURCE",
    "STANDARD_DEVIATION",
    "THICKNESS",
    "TRACKING_IDENTIFIER",
    "TRACKING_UNIQUE_IDENTIFIER",
    "VASCULARITY_GRADE",
    "VASCULARITY_INDEX",
    "VESSEL_COUNT",
    "laterality_code",
    "local_coding_scheme",
    "site_code",
]

# --------------------------------------------------------------------------------------
# Document structure (TID 1500 / 1501 / 1410)
# --------------------------------------------------------------------------------------

#: Root concept of TID 1500 (CID 7021).
IMAGING_MEASUREMENT_REPORT = Code("126000", "DCM", "Imaging Measurement Report")
#: Procedure Reported (CID 100).
DIAGNOSTIC_ULTRASONOGRAPHY = Code("16310003", "SCT", "Diagnostic ultrasonography")
IMAGE_LIBRARY = Code("111028", "DCM", "Image Library")
IMAGE_LIBRARY_GROUP = Code("126200", "DCM", "Image Library Group")
#: Concept name of an Image Library entry (TID 1601).
SOURCE = Code("260753009", "SCT", "Source")
MODALITY = Code("121139", "DCM", "Modality")
PIXEL_DATA_ROWS = Code("110910", "DCM", "Pixel Data Rows")
PIXEL_DATA_COLUMNS = Code("110911", "DCM", "Pixel Data Columns")
FRAME_OF_REFERENCE_UID = Code("112227", "DCM", "Frame of Reference UID")
PIXELS = Code("{pixels}", "UCUM", "Pixels")
IMAGING_MEASUREMENTS = Code("126010", "DCM", "Imaging Measurements")
MEASUREMENT_GROUP = Code("125007", "DCM", "Measurement Group")
#: TID 1500 row 12: document-level qualitative evaluations (TEXT children, row 14).
QUALITATIVE_EVALUATIONS = Code("C0034375", "UMLS", "Qualitative Evaluations")
#: Observer Type of the device observer (TID 1002).
DEVICE = Code("121007", "DCM", "Device")
TRACKING_IDENTIFIER = Code("112039", "DCM", "Tracking Identifier")
TRACKING_UNIQUE_IDENTIFIER = Code("112040", "DCM", "Tracking Unique Identifier")
FINDING = Code("121071", "DCM", "Finding")
FINDING_SITE = Code("363698007", "SCT", "Finding Site")
LATERALITY = Code("272741003", "SCT", "Laterality")
IMAGE_REGION = Code("111030", "DCM", "Image Region")
DERIVATION = Code("121401", "DCM", "Derivation")

#: Acquisition modality codes (CID 29) for the Image Library.
MODALITY_CODES: Mapping[str, Code] = MappingProxyType(
    {"US": Code("US", "DCM", "Ultrasound"), "OT": Code("OT", "DCM", "Other")}
)

# --------------------------------------------------------------------------------------
# Findings
# --------------------------------------------------------------------------------------

NERVE = Code("84782009", "SCT", "Peripheral nerve")
#: The nerve Finding of reports written before CONTRACT.md named SCT 84782009 (a tissue-type code);
#: readers still recognise it.
NERVE_BEFORE_2026_11 = Code("91728009", "SCT", "Nerve")
SKELETAL_MUSCLE = Code("127954009", "SCT", "Skeletal muscle")

# --------------------------------------------------------------------------------------
# Measurements, derivations, units
# --------------------------------------------------------------------------------------

AREA = Code("42798000", "SCT", "Area")
PERIMETER = Code("131191004", "SCT", "Perimeter")
MAJOR_AXIS = Code("131187009", "SCT", "Major Axis")
MINOR_AXIS = Code("131188004", "SCT", "Minor Axis")
THICKNESS = Code("59089-3", "LN", "Thickness")
ECHOGENICITY = Code("110849", "DCM", "Echogenicity")

MEAN = Code("373098007", "SCT", "Mean")
STANDARD_DEVIATION = Code("386136009", "SCT", "Standard Deviation")
MEDIAN = Code("373099004", "SCT", "Median")

MM = Code("mm", "UCUM", "mm")
MM2 = Code("mm2", "UCUM", "square millimeter")
#: Unit of gray-level echogenicity (a dimensionless 0-255 gray value), of vessel counts and grades.
NO_UNITS = Code("1", "UCUM", "no units")
#: Unit of the vascularity index (CID 7181, pydicom's concept dictionary: ``codes.UCUM.Percent``).
PERCENT = Code("%", "UCUM", "Percent")

# --------------------------------------------------------------------------------------
# Laterality (CID 244)
# --------------------------------------------------------------------------------------

RIGHT = Code("24028007", "SCT", "Right")
LEFT = Code("7771000", "SCT", "Left")
RIGHT_AND_LEFT = Code("51440002", "SCT", "Right and left")

LATERALITY_CODES: Mapping[Laterality, Code] = MappingProxyType(
    {Laterality.RIGHT: RIGHT, Laterality.LEFT: LEFT, Laterality.BOTH: RIGHT_AND_LEFT}
)


def laterality_code(laterality: Laterality) -> Code | None:
    """The SNOMED CT laterality code, or ``None`` when the side is unknown."""
    return LATERALITY_CODES.get(Laterality(laterality))


# --------------------------------------------------------------------------------------
# Private (local) codes
# --------------------------------------------------------------------------------------

#: Private coding scheme designator for concepts with no verified standard code.
LOCAL_SCHEME = "99MSKUS"
LOCAL_SCHEME_NAME = "mskus local codes"

#: TEXT concept: why no (or no mm) measurement was made on a frame or image.
NOT_MEASURED_REASON = Code("NOT-MEASURED", LOCAL_SCHEME, "Reason no measurement was made")
#: TEXT concept: how the frame was calibrated when not from an ultrasound region.
CALIBRATION_NOTE = Code("CALIBRATION", LOCAL_SCHEME, "Calibration note")
#: TEXT concept (document level): an image of the study that was not (fully) measured.
FAILED_IMAGE = Code("FAILED-IMAGE", LOCAL_SCHEME, "Image not fully measured")

# Doppler vascularity (CONTRACT.md section 4). No standard concept for these quantities was found:
# DCM 111372 "Vascularity" is the BI-RADS concept whose values are the codes of CID 6157 (present /
# not present ...), not a percentage, a count or a 0-3 grade; SNOMED CT observables for them could not
# be verified. Local codes, declared with the scheme.

#: NUM (%): share of the structure's area covered by colour-flow pixels.
VASCULARITY_INDEX = Code("VASC-INDEX", LOCAL_SCHEME, "Vascularity index")
#: NUM (1): separate colour-flow components inside the nerve contour.
VESSEL_COUNT = Code("VESSEL-COUNT", LOCAL_SCHEME, "Intraneural vessel count")
#: NUM (1): 0 none, 1 one vessel, 2 two or three, 3 more than three.
VASCULARITY_GRADE = Code("VASC-GRADE", LOCAL_SCHEME, "Vascularity grade")
#: TEXT: the colour-flow acquisition (Ultrasound Color Data Present, Pulse Repetition Frequency)
#: next to Doppler values, or why there are none ("no colour flow data").
COLOUR_FLOW = Code("COLOUR-FLOW", LOCAL_SCHEME, "Colour flow")


def local_coding_scheme() -> CodingSchemeIdentificationItem:
    """Coding Scheme Identification item declaring :data:`LOCAL_SCHEME`."""
    return CodingSchemeIdentificationItem(
        designator=LOCAL_SCHEME,
        name=LOCAL_SCHEME_NAME,
        responsible_organization="mskus project",
    )


# --------------------------------------------------------------------------------------
# Anatomic sites (protocol site names of configs/protocols.yaml)
# --------------------------------------------------------------------------------------

#: Protocol site name (lower case) -> Finding Site code. SCT where the code was
#: verified in the DICOM content mapping resource, local codes otherwise.
SITE_CODES: Mapping[str, Code] = MappingProxyType(
    {
        # Standard codes (verified: CID 8134 / 7710 / 7151 in PS3.16).
        "brachial plexus": Code("36582005", "SCT", "Brachial plexus"),
        "deltoid muscle": Code("35259002", "SCT", "Deltoid muscle"),
        "nerve": Code("84782009", "SCT", "Peripheral nerve"),
        "skeletal muscle": Code("127954009", "SCT", "Skeletal muscle"),
        # Local codes.
        "median nerve": Code("MEDIAN-N", LOCAL_SCHEME, "median nerve"),
        "ulnar nerve": Code("ULNAR-N", LOCAL_SCHEME, "ulnar nerve"),
        "radial nerve": Code("RADIAL-N", LOCAL_SCHEME, "radial nerve"),
        "tibial nerve": Code("TIBIAL-N", LOCAL_SCHEME, "tibial nerve"),
        "common peroneal nerve": Code("COM-PERONEAL-N", LOCAL_SCHEME, "common peroneal nerve"),
        "sural nerve": Code("SURAL-N", LOCAL_SCHEME, "sural nerve"),
        "sciatic nerve": Code("SCIATIC-N", LOCAL_SCHEME, "sciatic nerve"),
        "femoral nerve": Code("FEMORAL-N", LOCAL_SCHEME, "femoral nerve"),
        "rectus femoris muscle": Code("RECTUS-FEMORIS", LOCAL_SCHEME, "rectus femoris muscle"),
        "vastus muscle": Code("VASTUS", LOCAL_SCHEME, "vastus muscle"),
        "quadriceps muscle": Code("QUADRICEPS", LOCAL_SCHEME, "quadriceps muscle"),
        "tibialis anterior muscle": Code("TIBIALIS-ANT", LOCAL_SCHEME, "tibialis anterior muscle"),
        "gastrocnemius muscle": Code("GASTROCNEMIUS", LOCAL_SCHEME, "gastrocnemius muscle"),
        "soleus muscle": Code("SOLEUS", LOCAL_SCHEME, "soleus muscle"),
        "biceps muscle": Code("BICEPS", LOCAL_SCHEME, "biceps muscle"),
        "triceps muscle": Code("TRICEPS", LOCAL_SCHEME, "triceps muscle"),
        "forearm flexor muscles": Code("FOREARM-FLEXORS", LOCAL_SCHEME, "forearm flexor muscles"),
    }
)

_CODE_VALUE_MAX = 16  # Code Value is SH
_MEANING_MAX = 64  # Code Meaning is LO


def site_code(site: str) -> Code:
    """Finding Site code for a protocol site name.

    Known sites map to :data:`SITE_CODES`; any other name (from a custom
    rules file) gets a deterministic local code whose meaning is the name.

    Raises
    ------
    ValueError
        ``site`` is empty.
    """
    name = " ".join(str(site).split())
    if not name:
        raise ValueError("a finding site name must not be empty")
    known = SITE_CODES.get(name.lower())
    if known is not None:
        return known
    value = re.sub(r"[^A-Z0-9]+", "-", name.upper()).strip("-")
    if not value or len(value) > _CODE_VALUE_MAX:
        value = "SITE-" + hashlib.sha256(name.lower().encode("utf-8")).hexdigest()[:10].upper()
    return Code(value, LOCAL_SCHEME, name[:_MEANING_MAX])


# --------------------------------------------------------------------------------------
# Device identity
# --------------------------------------------------------------------------------------

#: Stable Device Observer UID of the mskus program (the same for every version;
#: the version is reported next to it).
DEVICE_OBSERVER_UID = "2.25." + str(uuid.uuid5(uuid.NAMESPACE_URL, "urn:mskus:device-observer").int)
