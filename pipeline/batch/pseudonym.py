"""``--pseudonymize``: keyed hashes instead of patient names and IDs.

Patient Name and Patient ID (and the Accession Number, which leads back to
the patient in the hospital's systems) are replaced by an HMAC-SHA256 of the
original value under a secret key: the same patient gets the same pseudonym
in every run with the same key, so studies stay linkable, but nobody without
the key can compute or reverse it. Birth date and referring physician are
emptied. The SR says what was done (Patient Identity Removed YES and a
De-identification Method); the CSVs carry only the pseudonymous ID.

Not covered: text burned into the pixels outside the tissue region (the
overlays then show the tissue region only), and whatever folder or file
names say (``source_file``).
"""

from __future__ import annotations

import hashlib
import hmac
import os
from dataclasses import dataclass, field

from pydicom.dataset import Dataset

from pipeline.errors import UsageError

__all__ = ["DEIDENTIFICATION_METHOD", "KEY_ENVIRONMENT_VARIABLE", "Pseudonymizer", "resolve_key"]

KEY_ENVIRONMENT_VARIABLE = "MSKUS_PSEUDONYM_KEY"
#: De-identification Method (0012,0063), LO: at most 64 characters.
DEIDENTIFICATION_METHOD = "mskus: name, ID, accession HMAC-SHA256; birth date removed"
_HASHED = ("PatientName", "PatientID", "AccessionNumber")
_EMPTIED = ("PatientBirthDate", "ReferringPhysicianName")
_REMOVED = (
    "PatientBirthTime",
    "OtherPatientIDs",
    "OtherPatientIDsSequence",
    "OtherPatientNames",
    "PatientBirthName",
    "PatientMotherBirthName",
    "PatientAddress",
    "PatientTelephoneNumbers",
    "MedicalRecordLocator",
    "IssuerOfPatientID",
)


def resolve_key(given: str | None, *, environ: dict[str, str] | None = None) -> bytes:
    """The pseudonym key from ``--pseudonym-key`` or ``MSKUS_PSEUDONYM_KEY``.

    Raises
    ------
    UsageError
        Neither is set (or the key is shorter than 8 characters): pseudonyms
        without a secret key could be recomputed by anyone.
    """
    env = os.environ if environ is None else environ
    key = given if given is not None else env.get(KEY_ENVIRONMENT_VARIABLE)
    if not key:
        raise UsageError(f"--pseudonymize needs a secret key: --pseudonym-key KEY or the environment variable {KEY_ENVIRONMENT_VARIABLE}")
    if len(key) < 8:
        raise UsageError("the pseudonym key must have at least 8 characters")
    return key.encode("utf-8")


@dataclass(frozen=True)
class Pseudonymizer:
    """Replace identifying header values by keyed hashes."""

    key: bytes = field(repr=False)

    def pseudonym(self, attribute: str, value: str) -> str:
        """32 upper-case hex characters of HMAC-SHA256(key, attribute + value); empty stays empty."""
        if not value:
            return ""
        message = f"{attribute}\x1f{value}".encode()
        return hmac.new(self.key, message, hashlib.sha256).hexdigest()[:32].upper()

    def apply(self, dataset: Dataset) -> Dataset:
        """Pseudonymize a header dataset in place (and return it)."""
        for keyword in _HASHED:
            if keyword in dataset:
                original = str(dataset.get(keyword) or "").strip()
                setattr(dataset, keyword, self.pseudonym(keyword, original) or None)
        for keyword in _EMPTIED:
            if keyword in dataset:
                setattr(dataset, keyword, None)
        for keyword in _REMOVED:
            if keyword in dataset:
                delattr(dataset, keyword)
        dataset.PatientIdentityRemoved = "YES"
        dataset.DeidentificationMethod = DEIDENTIFICATION_METHOD
        return dataset

    @staticmethod
    def mark(document: Dataset) -> None:
        """Say in an SR document that the patient's identity was removed."""
        document.PatientIdentityRemoved = "YES"
        document.DeidentificationMethod = DEIDENTIFICATION_METHOD
