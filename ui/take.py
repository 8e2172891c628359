"""The last take and the session's tally: its outcome (prefilled by the task's check), instruction and note, to keep
(the labels written into the episode) or to record again."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from PyQt6.QtWidgets import (
    QComboBox,
    QDoubleSpinBox,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
)

OUTCOMES: tuple[tuple[str, bool | None], ...] = (("success", True), ("failure", False), ("unknown", None))


@dataclass(frozen=True)
class Take:
    """A saved episode waiting for Keep, Re-record or Discard, with the labels it was saved with."""

    path: Path
    seed: int
    success: bool | None
    instruction: str


class TakePanel(QGroupBox):
    """Shows the last take's labels for editing, and counts the session's takes.

    MainWindow connects `keep_button` and `rerecord_button`; `offer` fills the panel after a take is saved,
    `labels` reads what the operator set, `close_take` empties it and counts the take as kept or discarded.
    """

    def __init__(self) -> None:
        super().__init__("Last take")
        form = QFormLayout(self)
        self.name_label = QLabel("none yet")
        self.outcome = QComboBox()
        for text, value in OUTCOMES:
            self.outcome.addItem(text, value)
        self.outcome.setToolTip("Prefilled by the task's own check; change it if the check got it wrong")
        self.instruction = QLineEdit()
        self.instruction.setToolTip("The language instruction stored with the episode")
        self.note = QLineEdit()
        self.note.setPlaceholderText("optional")
        buttons = QHBoxLayout()
        self.keep_button = QPushButton("Keep [K]")
        self.keep_button.setToolTip("Write the labels into the episode and keep it (Record does too)")
        self.rerecord_button = QPushButton("Re-record [R]")
        self.rerecord_button.setToolTip("Move the take to the trash and record the same scene again")
        buttons.addWidget(self.keep_button)
        buttons.addWidget(self.rerecord_button)
        self.tally = QLabel()
        self.reset_spin = QDoubleSpinBox()
        self.reset_spin.setRange(0.0, 120.0)
        self.reset_spin.setSuffix(" s")
        self.reset_spin.setToolTip("After Keep, the next take starts by itself after this pause, for resetting the "
                                   "scene (Esc cancels); 0: press Record")
        form.addRow("Episode", self.name_label)
        form.addRow("Outcome", self.outcome)
        form.addRow("Instruction", self.instruction)
        form.addRow("Note", self.note)
        form.addRow(buttons)
        form.addRow("Next take after", self.reset_spin)
        form.addRow(self.tally)
        self.take: Take | None = None
        self.kept = self.kept_success = self.discarded = 0
        self._show()

    def offer(self, take: Take) -> None:
        """Show a just-saved take for labelling."""
        self.take = take
        self.name_label.setText(take.path.name)
        self.outcome.setCurrentIndex([value for _, value in OUTCOMES].index(take.success))
        self.instruction.setText(take.instruction)
        self.note.clear()
        self._show()

    def labels(self) -> dict[str, object]:
        """The labels that differ from those the take was saved with (label_episode's arguments)."""
        assert self.take is not None
        changed: dict[str, object] = {}
        if self.outcome.currentData() != self.take.success:
            changed["success"] = self.outcome.currentData()
        if self.instruction.text().strip() != self.take.instruction:
            changed["instruction"] = self.instruction.text().strip()
        if self.note.text().strip():
            changed["note"] = self.note.text().strip()
        return changed

    def close_take(self, kept: bool) -> None:
        """The take was kept (with the outcome shown) or discarded: count it and empty the panel."""
        if self.take is None:
            return
        if kept:
            self.kept += 1
            self.kept_success += self.outcome.currentData() is True
        else:
            self.discarded += 1
        self.take = None
        self.name_label.setText("none pending")
        self._show()

    def count_discarded(self) -> None:
        """A take discarded while it was recorded (it never was offered)."""
        self.discarded += 1
        self._show()

    def _show(self) -> None:
        pending = self.take is not None
        for widget in (self.outcome, self.instruction, self.note, self.keep_button, self.rerecord_button):
            widget.setEnabled(pending)
        self.tally.setText(f"This session: {self.kept} kept ({self.kept_success} successful), "
                           f"{self.discarded} discarded")
