"""Render the app icon's PNG sizes from resources/icons/annotator.svg (the one source): `make icons`.

The PNGs are committed so a checkout has them without running Qt; tests/qt/test_resources.py
renders the SVG again and fails if a committed PNG no longer matches it.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

SIZES = (16, 32, 48, 64, 128, 256)
HERE = Path(__file__).resolve().parents[1] / "resources"


def render(size: int) -> Any:  # a QImage
    from PySide6.QtCore import Qt
    from PySide6.QtGui import QImage, QPainter
    from PySide6.QtSvg import QSvgRenderer

    renderer = QSvgRenderer(str(HERE / "icons" / "annotator.svg"))
    if not renderer.isValid():
        raise ValueError("icons/annotator.svg is not a valid SVG")
    image = QImage(size, size, QImage.Format.Format_ARGB32)
    image.fill(Qt.GlobalColor.transparent)
    painter = QPainter(image)
    painter.setRenderHint(QPainter.RenderHint.Antialiasing)
    renderer.render(painter)
    painter.end()
    return image


def main() -> int:
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from PySide6.QtGui import QGuiApplication

    _app = QGuiApplication.instance() or QGuiApplication(sys.argv[:1])
    for size in SIZES:
        out = HERE / "icons" / f"annotator-{size}.png"
        if not render(size).save(str(out)):
            raise OSError(f"{out}: could not be written")
        sys.stdout.write(f"{out}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
