"""De-identification: no output byte of any format holds the patient's name, ID or birth date."""

from __future__ import annotations

import numpy as np
import pytest
from support.export_cases import (
    PATIENT,
    all_output_bytes,
    volume_from_dicom_files,
    write_synthetic_ct_series,
)

from annotator.builtins import manifest as builtins
from annotator.core.labels import LabelMap, LabelTable
from annotator.export.api import ExportSpec, export_volume

PHI_FORMS = [PATIENT["patient_name"], "DOE JANE", "JANE DOE", "DOE_JANE", PATIENT["patient_id"],
             PATIENT["patient_birth_date"]]


@pytest.fixture(scope="module")
def dicom_case(tmp_path_factory):
    folder = tmp_path_factory.mktemp("src")
    volume = volume_from_dicom_files(write_synthetic_ct_series(folder))
    # the study description names the patient, as free text sometimes does
    import pydicom

    for path in volume.metadata["source_files"]:
        ds = pydicom.dcmread(path)
        ds.StudyDescription = "CT abdomen DOE^JANE follow-up"
        ds.save_as(path)
    table = LabelTable()
    table.add("liver", label_id=1)
    array = np.zeros(volume.shape_zyx, np.uint16)
    array[1:3, 4:10, 5:12] = 1
    return volume, LabelMap(volume.shape_zyx, table, array=array)


def scan(out_dir) -> list[str]:
    found = []
    for path, data in all_output_bytes(out_dir).items():
        low = data.lower()
        found += [f"{v} in {path.name}" for v in PHI_FORMS if v.lower().encode() in low]
    return found


@pytest.mark.parametrize("fmt", [c.id for c in builtins.exporters])
def test_no_patient_identifier_in_any_output_byte(tmp_path, dicom_case, fmt):
    volume, label_map = dicom_case
    export_volume(fmt, volume, label_map, tmp_path, ExportSpec(case_id="DOE^JANE_PID4711", slices="all"))
    assert any(tmp_path.rglob("*.*"))
    assert scan(tmp_path) == []


def test_keep_phi_keeps_them_and_the_scan_would_see_them(tmp_path, dicom_case):
    volume, label_map = dicom_case
    export_volume("dicom-seg", volume, label_map, tmp_path, ExportSpec(case_id="DOE_JANE", keep_phi=True))
    found = scan(tmp_path)
    assert any("PID4711" in f for f in found)
    assert any("DOE_JANE" in f for f in found)  # the file name
