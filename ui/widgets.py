"""The window's building blocks: camera view, joint and tick plots, state readout, episode table, key map."""

from __future__ import annotations

import os
from collections import deque
from html import escape

import numpy as np
import pyqtgraph as pg
from PyQt6.QtCore import Qt
from PyQt6.QtGui import QColor, QFont, QImage, QPixmap
from PyQt6.QtWidgets import QAbstractItemView, QHeaderView, QLabel, QTableWidget, QTableWidgetItem, QWidget

from recorder.episodes import EpisodeProblem, EpisodeSummary


def rgb_to_qimage(rgb: np.ndarray) -> QImage:
    """(H, W, 3) uint8 RGB array -> QImage that owns a copy of the pixels."""
    height, width, _ = rgb.shape
    pixels = np.ascontiguousarray(rgb, dtype=np.uint8).tobytes()
    return QImage(pixels, width, height, 3 * width, QImage.Format.Format_RGB888).copy()


class CameraView(QLabel):
    """Shows the latest frame of one camera, scaled by `scale`."""

    def __init__(self, width: int, height: int, scale: float = 2.0, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setFixedSize(round(width * scale), round(height * scale))
        self.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.setStyleSheet("background: #202020; color: #aaaaaa;")
        self.setText("no frame yet")
        self.shown: np.ndarray | None = None

    def show_rgb(self, rgb: np.ndarray) -> None:
        """Display an (H, W, 3) uint8 frame (kept as `shown`)."""
        self.shown = rgb
        image = rgb_to_qimage(rgb).scaled(self.size(), Qt.AspectRatioMode.KeepAspectRatio,
                                          Qt.TransformationMode.SmoothTransformation)
        self.setPixmap(QPixmap.fromImage(image))


ERROR_COLOR = "#c0392b"  # status lines and table rows that report a problem


class StatusLabel(QLabel):
    """One line (wrapped) of what just happened; red for an error."""

    def __init__(self, text: str = "", parent: QWidget | None = None) -> None:
        super().__init__(text, parent)
        self.setWordWrap(True)

    def say(self, text: str, error: bool = False) -> None:
        self.setStyleSheet(f"color: {ERROR_COLOR};" if error else "")
        self.setText(text)



class JointPlot(pg.PlotWidget):
    """Joint positions over the last `window_s` seconds, one curve per joint, and the commanded targets of the
    driven joints as dashed curves of the same colour (a gap between the two is the robot lagging its command)."""

    def __init__(self, joint_names: tuple[str, ...], window_s: float = 5.0,
                 parent: QWidget | None = None) -> None:
        super().__init__(parent, background="w")
        self.window_s = window_s
        self._history: deque[tuple[float, np.ndarray, np.ndarray]] = deque()
        self.setLabel("left", "q [rad] / [m]")
        self.setLabel("bottom", "t - now [s]")
        self.setXRange(-window_s, 0.0, padding=0.0)
        self.showGrid(x=True, y=True, alpha=0.3)
        colors = joint_colors(len(joint_names))
        self.curves = [self.plot(pen=pg.mkPen(color, width=2)) for color in colors]
        self.target_curves = [self.plot(pen=pg.mkPen(color, width=1, style=Qt.PenStyle.DashLine))
                               for color in colors]

    def clear_history(self) -> None:
        self._history.clear()
        for curve in (*self.curves, *self.target_curves):
            curve.setData([], [])

    def add(self, t: float, q: np.ndarray, target: np.ndarray | None = None) -> None:
        """Append one sample (monotonic time [s], joint positions, targets of the first joints) and redraw."""
        self._history.append((t, np.asarray(q, dtype=float), np.zeros(0) if target is None else np.asarray(target)))
        while self._history and t - self._history[0][0] > self.window_s:
            self._history.popleft()
        times = np.array([s[0] for s in self._history]) - t
        values = np.array([s[1] for s in self._history])
        for i, curve in enumerate(self.curves):
            if i < values.shape[1]:
                curve.setData(times, values[:, i])
        with_target = [(s[0] - t, s[2]) for s in self._history if len(s[2])]
        for i, curve in enumerate(self.target_curves):
            if with_target and i < len(with_target[-1][1]):
                curve.setData([w[0] for w in with_target], [w[1][i] for w in with_target])


class TickPlot(pg.PlotWidget):
    """The loop's latency: each recent tick's own time [ms] against the control period, late ones in red."""

    def __init__(self, period_ms: float, parent: QWidget | None = None) -> None:
        super().__init__(parent, background="w")
        self.setLabel("left", "tick [ms]")
        self.setLabel("bottom", "ticks ago")
        self.showGrid(x=False, y=True, alpha=0.3)
        self.setMouseEnabled(x=False, y=False)
        self._period_line = pg.InfiniteLine(angle=0, pen=pg.mkPen("#b23b3b", width=1, style=Qt.PenStyle.DashLine))
        self.addItem(self._period_line)
        self._bars = pg.BarGraphItem(x=[], height=[], width=0.8, brush="#5c6bc0")
        self._late = pg.BarGraphItem(x=[], height=[], width=0.8, brush="#b23b3b")
        self.addItem(self._bars)
        self.addItem(self._late)
        self.shown = np.zeros(0)  # the tick times drawn [ms]
        self.set_period(period_ms)

    def set_period(self, period_ms: float) -> None:
        """The control period [ms]: the dashed line, and what counts as late."""
        self.period_ms = period_ms
        self._period_line.setPos(period_ms)
        self.setYRange(0, 1.5 * period_ms, padding=0)

    def show_ticks(self, tick_ms: np.ndarray) -> None:
        """Draw the ticks' own times, oldest first; ticks longer than the period in red."""
        tick_ms = np.asarray(tick_ms, dtype=float)
        ago = np.arange(len(tick_ms))[::-1] * -1.0
        late = tick_ms > self.period_ms
        self._bars.setOpts(x=ago[~late], height=tick_ms[~late])
        self._late.setOpts(x=ago[late], height=tick_ms[late])
        top = max(1.5 * self.period_ms, float(tick_ms.max()) * 1.1 if len(tick_ms) else 0.0)
        self.setYRange(0, top, padding=0)
        self.setXRange(-max(len(tick_ms), 10), 1, padding=0)
        self.shown = tick_ms


def short_names(names: tuple[str, ...]) -> list[str]:
    """Joint names without a shared prefix ending in "_" ("panda_joint3" -> "joint3"), if still names."""
    prefix = os.path.commonprefix(list(names))
    prefix = prefix[: prefix.rfind("_") + 1]
    short = [name[len(prefix):] for name in names]
    return short if all(s[:1].isalpha() for s in short) else list(names)


def joint_colors(n: int) -> list[QColor]:
    """One distinct colour per joint, shared by the plot curves and the readout."""
    return [pg.intColor(i, hues=max(n, 2), values=1, maxValue=200) for i in range(n)]


def state_html(joint_names: tuple[str, ...], q: np.ndarray, ee_pos: np.ndarray, engaged: bool | None) -> str:
    """Readout: end-effector position [m], clutch state, one line per joint in its plot colour."""
    x, y, z = ee_pos
    lines = [f"ee&nbsp;x&nbsp;{x:+.3f}&nbsp;y&nbsp;{y:+.3f}&nbsp;z&nbsp;{z:+.3f}&nbsp;m"]
    if engaged is not None:
        lines.append("<b style='color:#2e7d32'>clutch ENGAGED</b>" if engaged else "clutch released")
    names = short_names(joint_names)
    width = max((len(n) for n in names), default=0)
    for name, value, color in zip(names, q, joint_colors(len(names)), strict=True):
        label = escape(name.ljust(width)).replace(" ", "&nbsp;")
        lines.append(f"<span style='color:{color.name()}'>&#9632;</span>&nbsp;{label}&nbsp;{value:+.3f}")
    return "<div style='font-family:monospace'>" + "<br>".join(lines) + "</div>"


def monospace_font(point_size: int = 9) -> QFont:
    font = QFont("monospace", point_size)
    font.setStyleHint(QFont.StyleHint.TypeWriter)
    return font


_COLUMNS = ("episode", "task", "frames", "duration", "success")


class EpisodeTable(QTableWidget):
    """The episodes of the output folder; unreadable files are shown in red with what is wrong."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(0, len(_COLUMNS), parent)
        self.setHorizontalHeaderLabels(_COLUMNS)
        self.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        rows, columns = self.verticalHeader(), self.horizontalHeader()
        if rows is not None and columns is not None:
            rows.setVisible(False)
            columns.setSectionResizeMode(QHeaderView.ResizeMode.Interactive)
            columns.setStretchLastSection(True)
        self.setTextElideMode(Qt.TextElideMode.ElideRight)  # an error row is cut at the edge; its tooltip has it all

    def show_episodes(self, items: list[EpisodeSummary | EpisodeProblem]) -> None:
        """Replace the rows with `items` (from scan_episodes)."""
        self.clearSpans()
        self.setRowCount(len(items))
        for row, item in enumerate(items):
            if isinstance(item, EpisodeProblem):
                self._problem_row(row, item)
            else:
                self._summary_row(row, item)
        self._fit_columns()
        if items:
            self.scrollToBottom()

    def _fit_columns(self) -> None:
        """Columns as wide as their header and the episodes' cells: an error row (one cell spanning the columns
        after the name) never widens them."""
        metrics = self.fontMetrics()
        for column, header in enumerate(_COLUMNS):
            cells = [item.text() for row in range(self.rowCount())
                     if (column == 0 or self.columnSpan(row, 1) == 1) and (item := self.item(row, column)) is not None]
            width = max(metrics.horizontalAdvance(text) for text in [header, *cells])
            self.setColumnWidth(column, width + 16)

    def names(self) -> list[str]:
        """Episode file names in display order."""
        return [item.text() if (item := self.item(row, 0)) is not None else "" for row in range(self.rowCount())]

    def _summary_row(self, row: int, item: EpisodeSummary) -> None:
        success = {True: "yes", False: "no", None: "?"}[item.success]
        cells = (item.name, item.task, str(item.num_steps), f"{item.duration_s:.1f} s", success)
        for column, text in enumerate(cells):
            self.setItem(row, column, QTableWidgetItem(text))

    def _problem_row(self, row: int, item: EpisodeProblem) -> None:
        red = QColor(ERROR_COLOR)
        for column, text in enumerate((item.name, f"ERROR: {item.message}")):
            cell = QTableWidgetItem(text)
            cell.setForeground(red)
            cell.setToolTip(item.message)
            self.setItem(row, column, cell)
        self.setSpan(row, 1, 1, len(_COLUMNS) - 1)


def key_map_html(key_map: dict[str, str]) -> str:
    """The keyboard device's key map as an HTML table."""
    rows = "".join(f"<tr><td><b>{escape(keys)}</b>&nbsp;&nbsp;</td><td>{escape(what)}</td></tr>"
                   for keys, what in key_map.items())
    return f"<table cellspacing='2'>{rows}</table>"
