"""Running the window as an application: QApplication, settings, the main window on a path or the demo."""

from __future__ import annotations

import argparse
import logging
import sys

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QApplication

from annotator.qt.main_window import MainWindow
from annotator.qt.resources import app_icon, style_sheet
from annotator.settings import Settings


def run_app(args: argparse.Namespace) -> int:
    """Open the window (on args.path or the demo volume) and run the event loop."""
    app = QApplication.instance() or QApplication(sys.argv[:1])
    assert isinstance(app, QApplication)  # a window needs widgets, not a QCoreApplication
    app.setApplicationName("annotator")
    app.setDesktopFileName("annotator")  # matches resources/annotator.desktop (Wayland icon, taskbar)
    try:
        app.setWindowIcon(app_icon())
        app.setStyleSheet(style_sheet())
    except (OSError, FileNotFoundError) as exc:  # a damaged install still opens, plainly styled
        logging.getLogger(__name__).warning("resources not loaded: %s", exc)
    settings = Settings.load()
    engine_options = {k: getattr(args, k, None) for k in ("engine", "checkpoint", "runtime")}
    window = MainWindow(settings, engine_options={k: v for k, v in engine_options.items() if v})
    window.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
    window.show()
    from annotator.plugin_host.manager import get_registry

    failures = get_registry().failures
    if failures:  # the app runs without them; say so once, details in Help → Plugins
        window.statusBar().showMessage(f"{len(failures)} plugin(s) failed to load: "
                                       f"{', '.join(f.plugin for f in failures)} (Help → Plugins)", 15000)
    if getattr(args, "self_test", False):
        from annotator.qt.self_test import schedule_self_test

        schedule_self_test(app, window)
    elif getattr(args, "review", None):
        window.open_dataset(args.review, getattr(args, "output", None))
    elif getattr(args, "path", None):
        window.open_path(args.path)
        if getattr(args, "labels", None):
            window.files.pending_labels = args.labels
    elif getattr(args, "demo", False):
        window.open_demo()
    app.aboutToQuit.connect(window.shutdown)
    return int(app.exec())
