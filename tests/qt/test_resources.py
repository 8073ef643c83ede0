"""resources/: the PNG icons are renders of the one SVG, the desktop entry and AppStream metadata
are valid, and the running app uses the icon and the style sheet from there."""

from __future__ import annotations

import configparser
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
RESOURCES = ROOT / "resources"


def _pixels(image) -> np.ndarray:
    from PySide6.QtGui import QImage

    image = image.convertToFormat(QImage.Format.Format_RGBA8888)
    ptr = image.constBits()
    return np.frombuffer(ptr, np.uint8, image.sizeInBytes()).reshape(image.height(), image.bytesPerLine())[
        :, : image.width() * 4].astype(int)


def test_committed_pngs_are_renders_of_the_svg(qapp):
    sys.path.insert(0, str(ROOT / "packaging"))
    try:
        from build_icons import SIZES, render
    finally:
        sys.path.pop(0)
    from PySide6.QtGui import QImage

    for size in SIZES:
        committed = QImage(str(RESOURCES / "icons" / f"annotator-{size}.png"))
        assert committed.width() == committed.height() == size, size
        diff = np.abs(_pixels(committed) - _pixels(render(size)))
        assert diff.max() <= 2, f"annotator-{size}.png is stale: run `make icons`"


def test_desktop_entry_and_appstream_metadata():
    entry = configparser.ConfigParser(interpolation=None)
    entry.optionxform = str
    entry.read(RESOURCES / "annotator.desktop")
    desktop = entry["Desktop Entry"]
    assert desktop["Type"] == "Application"
    assert desktop["Exec"].split()[0] == "annotator"
    assert desktop["Icon"] == "annotator"
    assert desktop["Categories"].endswith(";")
    meta = RESOURCES / "io.github.annotator.annotator.metainfo.xml"
    root = ET.parse(meta).getroot()
    assert root.findtext("launchable") == "annotator.desktop"
    assert root.findtext("provides/binary") == "annotator"
    if shutil.which("appstreamcli"):  # the reference validator, where the machine has it
        result = subprocess.run(["appstreamcli", "validate", "--no-net", str(meta)], capture_output=True, text=True)
        assert result.returncode == 0, result.stdout + result.stderr
    if shutil.which("desktop-file-validate"):
        result = subprocess.run(["desktop-file-validate", str(RESOURCES / "annotator.desktop")],
                                capture_output=True, text=True)
        assert result.returncode == 0, result.stdout + result.stderr


def test_package_reaches_the_same_resources():
    from annotator.qt.resources import resource_dir, style_sheet

    assert resource_dir().resolve() == RESOURCES.resolve()
    assert "QLabel#image-info" in style_sheet()


@pytest.mark.gui
def test_window_uses_icon_and_style_sheet(qtbot):
    from PySide6.QtWidgets import QApplication

    from annotator.qt.main_window import MainWindow
    from annotator.qt.resources import app_icon, style_sheet
    from annotator.settings import Settings

    icon = app_icon()
    assert not icon.isNull()
    assert 256 in [s.width() for s in icon.availableSizes()]
    app = QApplication.instance()
    previous = app.styleSheet()
    app.setStyleSheet(style_sheet())
    try:
        win = MainWindow(Settings(), start_engine=False)
        qtbot.addWidget(win)
        win.show()
        qtbot.waitExposed(win)
        colour = win.info.palette().color(win.info.backgroundRole())
        assert colour.name() == "#202020"  # from style.qss, not from code
        win.shutdown()
    finally:
        app.setStyleSheet(previous)
