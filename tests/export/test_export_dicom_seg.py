"""DICOM SEG export: highdicom reads back the same per-segment masks on the same source frames."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from support.export_cases import (
    PATIENT,
    all_output_bytes,
    labels_for,
    shared_data_or_skip,
    volume_from_dicom_files,
    write_synthetic_ct_series,
)

from annotator.core.errors import GeometryMismatchError, InputError
from annotator.export.api import ExportSpec, export_volume


def check_seg_reads_back(path, volume, label_map):
    import highdicom as hd

    seg = hd.seg.segread(str(path))
    assert seg.SegmentationType == "BINARY"
    assert seg.FrameOfReferenceUID == volume.metadata["frame_of_reference_uid"]
    assert seg.ReferencedSeriesSequence[0].SeriesInstanceUID == volume.metadata["series_instance_uid"]
    numbers = seg.get_segment_numbers()
    by_label = {}
    for number in numbers:
        desc = seg.get_segment_description(number)
        label = label_map.table.by_name(desc.segment_label)
        assert label is not None, desc.segment_label
        from highdicom.color import CIELabColor

        rgb = CIELabColor.from_dicom_value(desc.RecommendedDisplayCIELabValue).to_rgb()
        assert rgb == pytest.approx(label.color, abs=1)
        by_label[label.id] = number
    assert sorted(by_label) == label_map.present_ids()
    uids = volume.metadata["sop_instance_uids"]
    pixels = seg.get_pixels_by_source_instance(source_sop_instance_uids=uids, segment_numbers=numbers)
    assert pixels.shape == (len(uids), *volume.shape_zyx[1:], len(numbers))
    for label_id, number in by_label.items():
        np.testing.assert_array_equal(pixels[..., numbers.index(number)].astype(bool), label_map.array == label_id)


def test_synthetic_series_round_trip_and_no_phi_in_any_byte(tmp_path):
    volume = volume_from_dicom_files(write_synthetic_ct_series(tmp_path / "src"))
    label_map = labels_for(volume)
    out = tmp_path / "out"
    export_volume("dicom-seg", volume, label_map, out, ExportSpec(case_id="Doe^Jane"))
    (path,) = out.glob("*.dcm")
    check_seg_reads_back(path, volume, label_map)
    for file, data in all_output_bytes(out).items():
        for value in PATIENT.values():
            assert value.encode() not in data, f"{value} found in {file}"
    import pydicom

    ds = pydicom.dcmread(str(path))
    assert str(ds.PatientName) == "Anonymous^"
    assert ds.PatientID.startswith("ANON-")


def test_seg_is_deidentified_by_the_ps315_basic_profile_with_an_unlinkable_pseudonym(tmp_path):
    """Every identifying attribute the issue found in a SEG (and the rest of table E.1-1) is gone
    or emptied; the UIDs are kept so the SEG still lies on its source; the Patient ID pseudonym is
    keyed per output folder, so two datasets cannot be linked and a record number cannot be
    recovered by hashing candidates."""
    import hashlib
    import hmac

    import pydicom

    files = write_synthetic_ct_series(tmp_path / "src")
    for file in files:  # what real archives carry (the list)
        ds = pydicom.dcmread(file)
        ds.AccessionNumber, ds.ReferringPhysicianName, ds.StudyID = "ACC99", "WHO^DOCTOR", "STUDY77"
        ds.InstitutionName, ds.OtherPatientIDs, ds.PatientAddress = "Saint Elsewhere", "OTHER123", "1 Main St"
        ds.PatientAge, ds.StudyDescription = "055Y", "Jane's liver follow-up"
        ds.save_as(file)
    volume = volume_from_dicom_files(files)
    out_a, out_b = tmp_path / "a", tmp_path / "b"
    export_volume("dicom-seg", volume, labels_for(volume), out_a, ExportSpec(case_id="one"))
    export_volume("dicom-seg", volume, labels_for(volume), out_b, ExportSpec(case_id="one"))
    seg_a = pydicom.dcmread(next(out_a.glob("*.dcm")))
    seg_b = pydicom.dcmread(next(out_b.glob("*.dcm")))
    # removed, emptied, or the profile's dummy value (dates 00010101): never the source's value
    dummies = ("", "00010101", "000000.00", "000000", "ANONYMOUS", "Anonymous", "O")
    for keyword in ("AccessionNumber", "ReferringPhysicianName", "StudyID", "PatientBirthDate", "PatientSex",
                    "PatientAge", "StudyDate", "StudyTime"):
        assert str(seg_a.get(keyword, "") or "") in dummies, (keyword, seg_a.get(keyword))
    for keyword in ("InstitutionName", "OtherPatientIDs", "PatientAddress", "StudyDescription"):
        assert keyword not in seg_a, keyword
    data = next(out_a.glob("*.dcm")).read_bytes()
    for value in ("ACC99", "WHO^DOCTOR", "STUDY77", "Elsewhere", "OTHER123", "Main St", "20240101", "PID4711"):
        assert value.encode() not in data, value
    assert seg_a.PatientIdentityRemoved == "YES"
    assert "PS3.15" in seg_a.DeidentificationMethod
    assert [c.CodeValue for c in seg_a.DeidentificationMethodCodeSequence] == ["113100", "113110"]
    assert seg_a.StudyInstanceUID == pydicom.dcmread(files[0]).StudyInstanceUID  # Retain UIDs
    check_seg_reads_back(next(out_a.glob("*.dcm")), volume, labels_for(volume))
    # the pseudonym: stable within a folder, different across folders, never an unkeyed hash
    assert seg_a.PatientID != seg_b.PatientID
    export_volume("dicom-seg", volume, labels_for(volume), out_a, ExportSpec(case_id="two"))
    assert pydicom.dcmread(out_a / "two_seg.dcm").PatientID == seg_a.PatientID
    unkeyed = {hashlib.blake2b(b"PID4711", digest_size=5).hexdigest().upper(),
               hashlib.sha256(b"PID4711").hexdigest()[:16].upper()}
    assert seg_a.PatientID[len("ANON-"):] not in unkeyed
    # the key lives outside the dataset and, kept by the user, re-identifies
    from annotator.export.deidentify import key_path_for

    key_file = key_path_for(out_a)
    assert not key_file.is_relative_to(out_a)
    key = bytes.fromhex(key_file.read_text().split()[0])
    expected = hmac.new(key, b"PID4711", hashlib.sha256).hexdigest()[:16].upper()
    assert seg_a.PatientID == "ANON-" + expected
    out_c = tmp_path / "c"
    export_volume("dicom-seg", volume, labels_for(volume), out_c,
                  ExportSpec(case_id="one", pseudonym_key_file=str(key_file)))
    assert pydicom.dcmread(next(out_c.glob("*.dcm"))).PatientID == seg_a.PatientID


def test_keep_phi_copies_the_patient_module(tmp_path):
    import pydicom

    volume = volume_from_dicom_files(write_synthetic_ct_series(tmp_path / "src", n_slices=2))
    out = tmp_path / "out"
    export_volume("dicom-seg", volume, labels_for(volume), out, ExportSpec(case_id="c", keep_phi=True))
    ds = pydicom.dcmread(str(out / "c_seg.dcm"))
    assert str(ds.PatientName) == PATIENT["patient_name"]
    assert ds.PatientID == PATIENT["patient_id"]


def test_slice_that_does_not_match_its_source_frame_is_refused(tmp_path):
    volume = volume_from_dicom_files(write_synthetic_ct_series(tmp_path / "src"))
    files = list(volume.metadata["source_files"])
    files[0], files[1] = files[1], files[0]
    swapped = volume.with_array(volume.array, metadata={**volume.metadata, "source_files": files})
    with pytest.raises(GeometryMismatchError, match="slice 0"):
        export_volume("dicom-seg", swapped, labels_for(swapped), tmp_path / "out", ExportSpec())
    assert not (tmp_path / "out").exists()


def test_non_dicom_source_is_refused_with_a_clear_message(tmp_path, volume, label_map):
    with pytest.raises(InputError, match="DICOM SEG needs an image loaded from a DICOM series"):
        export_volume("dicom-seg", volume, label_map, tmp_path, ExportSpec())


@pytest.mark.realdata
@pytest.mark.parametrize("loader", ["pydicom", "annotator.io"])
def test_real_philips_ct_series_round_trip(tmp_path, loader):
    folder = shared_data_or_skip() / "dicom" / "ct_philips_ingenuity_axial_5mm" / "dcm"
    if loader == "pydicom":
        volume = volume_from_dicom_files(sorted(folder.iterdir()))
    else:
        pytest.importorskip("annotator.io.dicom")
        from annotator.io import load_volume

        volume = load_volume(folder)
    assert volume.shape_zyx == (28, 512, 512)
    label_map = labels_for(volume)
    export_volume("dicom-seg", volume, label_map, tmp_path, ExportSpec(case_id="philips"))
    check_seg_reads_back(tmp_path / "philips_seg.dcm", volume, label_map)
    data = (tmp_path / "philips_seg.dcm").read_bytes()
    assert volume.metadata["patient_id"].encode() not in data


def test_source_without_plane_position_is_a_clear_input_error(tmp_path):
    import pydicom

    volume = volume_from_dicom_files(write_synthetic_ct_series(tmp_path / "src", n_slices=2))
    first = volume.metadata["source_files"][0]
    ds = pydicom.dcmread(first)
    del ds.ImagePositionPatient
    ds.save_as(first)
    with pytest.raises(InputError, match="single-frame source images"):
        export_volume("dicom-seg", volume, labels_for(volume), tmp_path / "out", ExportSpec())
    assert not (tmp_path / "out").exists()


def test_empty_uids_in_the_source_are_taken_from_file_meta_and_other_slices(tmp_path):
    """Real archives hold files whose dataset body carries empty UIDs (highdicom then raised
    KeyError: ''): the SEG is written from the file meta and the other slices, and each frame
    references the right source instance; where no source has the UID, a one-line refusal names it."""
    import highdicom as hd
    import pydicom

    files = write_synthetic_ct_series(tmp_path / "src")
    instance_uids = []
    for n, file in enumerate(files):
        ds = pydicom.dcmread(file)
        instance_uids.append(ds.file_meta.MediaStorageSOPInstanceUID)
        ds.SOPInstanceUID, ds.SOPClassUID = "", ""
        if n % 2:
            ds.StudyInstanceUID, ds.FrameOfReferenceUID = "", ""
        ds.save_as(file, enforce_file_format=False)
    volume = volume_from_dicom_files(files)
    label_map = labels_for(volume)
    export_volume("dicom-seg", volume, label_map, tmp_path / "out", ExportSpec(case_id="c"))
    seg = hd.seg.segread(str(tmp_path / "out" / "c_seg.dcm"))
    numbers = list(seg.segment_numbers)
    pixels = seg.get_pixels_by_source_instance(source_sop_instance_uids=instance_uids, segment_numbers=numbers)
    assert pixels.shape[0] == len(files)
    assert np.any(pixels)
    assert seg.StudyInstanceUID == pydicom.dcmread(files[0]).StudyInstanceUID

    for file in files:
        ds = pydicom.dcmread(file)
        ds.StudyInstanceUID = ""
        ds.save_as(file, enforce_file_format=False)
    volume = volume_from_dicom_files(files)
    with pytest.raises(InputError, match="StudyInstanceUID is empty in every slice"):
        export_volume("dicom-seg", volume, labels_for(volume), tmp_path / "refused", ExportSpec(case_id="c"))
    assert not list((tmp_path / "refused").glob("*.dcm"))


def test_real_512_ct_in_jpeg2000_with_empty_body_uids_still_gets_its_seg(tmp_path):
    """The issue's case on real scanner data: the shared 512² Philips CT re-encoded as JPEG 2000
    (lossless), its dataset bodies carrying empty SOP Class/Instance UIDs and, in every other file,
    an empty Study Instance UID. Loaded through our reader, exported, read back by highdicom: every
    frame references the right source instance (the file meta's)."""
    import highdicom as hd
    import pydicom
    from pydicom.uid import JPEG2000Lossless

    from annotator.io import load_volume

    folder = shared_data_or_skip() / "dicom" / "ct_philips_ingenuity_axial_5mm" / "dcm"
    src = tmp_path / "j2k"
    src.mkdir()
    for n, file in enumerate(sorted(folder.iterdir())):
        ds = pydicom.dcmread(file)
        ds.compress(JPEG2000Lossless)
        ds.SOPInstanceUID, ds.SOPClassUID = "", ""
        if n % 2:
            ds.StudyInstanceUID = ""
        ds.save_as(src / file.name, enforce_file_format=False)
    volume = load_volume(src)
    assert volume.shape_zyx == (28, 512, 512)
    label_map = labels_for(volume)
    export_volume("dicom-seg", volume, label_map, tmp_path / "out", ExportSpec(case_id="c"))
    seg = hd.seg.segread(str(tmp_path / "out" / "c_seg.dcm"))
    by_file = {str(p): pydicom.dcmread(p, stop_before_pixels=True).file_meta.MediaStorageSOPInstanceUID
               for p in src.iterdir()}
    uids = [by_file[str(Path(f))] for f in volume.metadata["source_files"]]
    numbers = list(seg.segment_numbers)
    pixels = seg.get_pixels_by_source_instance(source_sop_instance_uids=uids, segment_numbers=numbers)
    for number in numbers:
        label_id = label_map.table.by_name(seg.get_segment_description(number).segment_label).id
        np.testing.assert_array_equal(pixels[..., numbers.index(number)].astype(bool), label_map.array == label_id)
