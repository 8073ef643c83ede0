"""De-identification of DICOM headers copied into our outputs: the DICOM PS3.15 Basic Application Level
Confidentiality Profile (attribute table E.1-1, as maintained in the dicom-anonymizer package) with
the Retain UIDs option, and a pseudonymous Patient ID that cannot be linked back without a key.

UIDs are retained because a SEG must reference its source instances to be shown on them; every
other identifying attribute is removed, emptied or replaced as the table says. The pseudonym is
HMAC-SHA256(key, PatientID) with a random key per output folder, kept outside that folder (in the
user's data directory) so that whoever receives the dataset cannot brute-force record numbers;
the user may keep the key to re-identify.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import os
import secrets
from pathlib import Path
from typing import Any

from annotator.core.atomic import atomic_write_text
from annotator.core.errors import InputError

# DICOM CID 7050 codes for what was done (PS3.16): the basic profile and the options applied.
BASIC_PROFILE = ("113100", "Basic Application Confidentiality Profile")
RETAIN_UIDS = ("113110", "Retain UIDs Option")
METHOD_TEXT = "PS3.15 E.1-1 Basic Profile, Retain UIDs (annotator)"  # LO: at most 64 characters


def pseudonym_key_dir() -> Path:
    from annotator.settings import data_dir

    return data_dir() / "pseudonym-keys"


def key_path_for(out_dir: str | os.PathLike[str]) -> Path:
    """Where the key of one output folder is kept (outside it)."""
    folder = os.fspath(Path(out_dir).resolve())
    return pseudonym_key_dir() / f"{hashlib.sha256(folder.encode()).hexdigest()[:16]}.key"


def dataset_key(out_dir: str | os.PathLike[str], key_file: str | os.PathLike[str] | None = None) -> bytes:
    """The pseudonym key for an output folder: `key_file` if given (hex), else the one kept for
    this folder, else a new random one, stored so later exports into the folder agree."""
    path = Path(key_file) if key_file else key_path_for(out_dir)
    if path.exists():
        try:
            key = bytes.fromhex(path.read_text(encoding="ascii").split()[0])
        except (OSError, ValueError, IndexError) as exc:
            raise InputError(path, f"not a pseudonym key file (one line of hex) ({exc})") from exc
        if len(key) < 16:
            raise InputError(path, "pseudonym key is shorter than 128 bits")
        return key
    if key_file:
        raise InputError(path, "pseudonym key file does not exist")
    key = secrets.token_bytes(32)
    old = os.umask(0o077)  # the key re-identifies patients: readable by its owner only
    try:
        atomic_write_text(path, key.hex() + f"\n# pseudonym key for exports into {Path(out_dir).resolve()}\n")
    finally:
        os.umask(old)
    return key


def pseudonym(patient_id: str, key: bytes) -> str:
    """`ANON-` + 16 hex digits of HMAC-SHA256(key, PatientID): stable within a dataset, unlinkable
    without the key (an unkeyed hash of a record number is reversed by trying them all)."""
    return "ANON-" + hmac.new(key, patient_id.encode("utf-8"), hashlib.sha256).hexdigest()[:16].upper()


def deidentify_dataset(ds: Any, key: bytes) -> Any:
    """`ds` de-identified in place by the PS3.15 basic profile (UIDs retained); returns it."""
    from dicomanonymizer.simpledicomanonymizer import anonymize_dataset
    from pydicom.dataset import Dataset

    patient_id = str(ds.get("PatientID", "") or "")
    actions = basic_profile_retaining_uids()
    anonymize_dataset(ds, delete_private_tags=True, base_rules_gen=lambda: dict(actions))
    ds.PatientName = "Anonymous^"  # a family name and an empty given name: unambiguous PN
    ds.PatientID = pseudonym(patient_id, key) if patient_id else pseudonym(str(ds.get("StudyInstanceUID", "")), key)
    ds.PatientIdentityRemoved = "YES"
    ds.DeidentificationMethod = METHOD_TEXT
    codes = []
    for value, meaning in (BASIC_PROFILE, RETAIN_UIDS):
        item = Dataset()
        item.CodeValue, item.CodingSchemeDesignator, item.CodeMeaning = value, "DCM", meaning
        codes.append(item)
    ds.DeidentificationMethodCodeSequence = codes
    return ds


@functools.cache
def basic_profile_retaining_uids() -> dict[Any, Any]:
    """Table E.1-1's action per attribute, UIDs kept (built once: a series has hundreds of slices)."""
    from dicomanonymizer.simpledicomanonymizer import initialize_actions, keep

    actions = initialize_actions("dicomfields_2026c")
    actions.update({tag: keep for tag in actions if len(tag) == 2 and _is_uid_tag(tag)})
    return actions


def _is_uid_tag(tag: tuple[int, int]) -> bool:
    from pydicom.datadict import dictionary_VR

    try:
        return dictionary_VR(tag) == "UI"
    except KeyError:
        return False
