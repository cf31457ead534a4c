"""A progress bar that appears only where someone watches: on a terminal, or when asked."""
from __future__ import annotations

import sys
import time

__all__ = ["Progress", "check_progress"]

PROGRESS_AFTER_S = 2.0  # open a bar when the run is expected to take longer


def check_progress(progress) -> None:
    if progress is not None and not isinstance(progress, bool):
        raise TypeError(f"`progress` must be None, True or False, got {progress!r}")


class Progress:
    """Counts work units; a tqdm bar on stderr.

    ``enabled`` True: always; False: never; None: only when stderr is a
    terminal and the run is expected to take over ``PROGRESS_AFTER_S`` (so a
    log file or a pipe never receives carriage-return updates).
    """

    def __init__(self, total: int, enabled: bool | None, desc: str):
        if enabled is None and not sys.stderr.isatty():
            enabled = False
        self.total, self.enabled, self.desc = total, enabled, desc
        self.done, self.bar, self.t0 = 0, None, time.perf_counter()
        if enabled is True:
            self._open()

    def _open(self):
        from tqdm.auto import tqdm
        self.bar = tqdm(total=self.total, initial=self.done, desc=self.desc, leave=False, mininterval=0.5,
                        bar_format="{desc}: {percentage:3.0f}%|{bar}| [{elapsed}<{remaining}]")

    def __call__(self, units: int):
        self.done += units
        if self.bar is not None:
            self.bar.update(units)
        elif self.enabled is None and self.done < self.total:
            elapsed = time.perf_counter() - self.t0
            if elapsed * self.total / self.done > PROGRESS_AFTER_S:
                self._open()

    def close(self):
        if self.bar is not None:
            self.bar.close()
