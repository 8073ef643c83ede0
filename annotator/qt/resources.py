"""The files the window loads at run time (app icon, style sheet) from the repository's
`resources/`, the one source of truth: `annotator/resources` is a link to it, which a wheel or a
packaged app turns into a real folder inside the package; a checkout whose link did not survive
(Windows without symlinks) falls back to the folder beside the package."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtGui import QIcon

_PACKAGE = Path(__file__).resolve().parents[1]


def resource_dir() -> Path:
    for candidate in (_PACKAGE / "resources", _PACKAGE.parent / "resources"):
        if (candidate / "icons" / "annotator.svg").is_file():
            return candidate
    raise FileNotFoundError(f"annotator's resources are missing (looked in {_PACKAGE / 'resources'})")


def app_icon() -> QIcon:
    icons = resource_dir() / "icons"
    icon = QIcon()
    for png in sorted(icons.glob("annotator-*.png")):  # crisp at the sizes desktops ask for
        icon.addFile(str(png))
    return icon


def style_sheet() -> str:
    return (resource_dir() / "style.qss").read_text(encoding="utf-8")
