"""Keras's text progress bar (`keras.utils.Progbar`) and its switch between printing to stdout
("interactive logging", the default) and Python's `logging` (`disable_interactive_logging`)."""
import logging
import math
import os
import sys
import threading
import time

import numpy as np

_state = threading.local()   # per thread, as Keras's global state
_logger = logging.getLogger("lamina")


def enable_interactive_logging():
    """Progress bars and messages go to stdout (the default)."""
    _state.interactive = True


def disable_interactive_logging():
    """Progress bars and messages go to the "lamina" logger (level INFO) instead of stdout, e.g. to
    keep log files free of carriage returns."""
    _state.interactive = False


def is_interactive_logging_enabled():
    return getattr(_state, "interactive", True)


def reset_interactive_logging():
    """Back to the default (what `clear_session` does, as Keras's)."""
    _state.__dict__.pop("interactive", None)


def print_msg(message, line_break=True):
    """Writes `message` to stdout, or logs it when interactive logging is disabled."""
    if is_interactive_logging_enabled():
        sys.stdout.write(message + ("\n" if line_break else ""))
        sys.stdout.flush()
    else:
        _logger.info(message)


def _format_time(time_per_unit, unit_name):
    if time_per_unit >= 1 or time_per_unit == 0:
        return f" {time_per_unit:.0f}s/{unit_name}"
    if time_per_unit >= 1e-3:
        return f" {time_per_unit * 1000.0:.0f}ms/{unit_name}"
    return f" {time_per_unit * 1000000.0:.0f}us/{unit_name}"


def _average(entry):
    value, count = entry
    if not isinstance(value, float):
        value = np.mean(value)
    return value / max(1, count)


class Progbar:
    """A progress bar, as Keras's: `update(current, values)` with `values` a list of
    `(name, value)` pairs; values are averaged over the steps seen (weighted by the steps each
    covers), except the names in `stateful_metrics`, shown as given. With `stateless_metrics`
    instead, only those are averaged. `verbose`: 0 silent, 1 a bar redrawn at most every
    `interval` seconds, 2 one line when the target is reached. `target=None`: unknown length."""

    def __init__(self, target, width=20, verbose=1, interval=0.05, stateful_metrics=None, stateless_metrics=None,
                 unit_name="step"):
        if stateful_metrics is not None and stateless_metrics is not None:
            raise ValueError("Only one of `stateful_metrics` or `stateless_metrics` can be provided. "
                             "`stateful_metrics` is used to make metrics stateless by default (with an exclusion "
                             "list), while `stateless_metrics` is used to make metrics stateful by default (with "
                             "an exclusion list).")
        if target is not None and (isinstance(target, bool) or not isinstance(target, (int, np.integer))
                                   or target < 0):
            raise ValueError(f"Progbar: target must be the total number of steps (an int >= 0) or None when it is "
                             f"unknown, received {target!r}")
        if verbose not in (0, 1, 2):
            raise ValueError(f"Progbar: verbose must be 0 (silent), 1 (a bar) or 2 (a line at the end), received "
                             f"{verbose!r}")
        self.target, self.width, self.verbose = target, width, verbose
        self.interval, self.unit_name = interval, unit_name
        if stateful_metrics is not None:
            self.stateful_metrics, self.stateless_metrics = set(stateful_metrics), None
        elif stateless_metrics is not None:
            self.stateful_metrics, self.stateless_metrics = None, set(stateless_metrics)
        else:
            self.stateful_metrics, self.stateless_metrics = set(), None
        self._dynamic_display = ((hasattr(sys.stdout, "isatty") and sys.stdout.isatty()) or "ipykernel" in sys.modules
                                 or "posix" in sys.modules or "PYCHARM_HOSTED" in os.environ)
        self._seen_so_far = 0
        self._values = {}
        self._values_order = []
        self._start = time.time()
        self._last_update = 0
        self._time_after_first_step = None
        self._prev_total_width = 0

    def update(self, current, values=None, finalize=None):
        """Shows `current` steps done; `finalize` (default: current >= target) ends the bar."""
        if finalize is None:
            finalize = False if self.target is None else current >= self.target
        for k, v in values or []:
            if k not in self._values_order:
                self._values_order.append(k)
            stateless = k not in self.stateful_metrics if self.stateful_metrics is not None \
                else k in self.stateless_metrics
            if stateless:
                if finalize:
                    self._values[k] = [v, 1]
                else:
                    base = max(current - self._seen_so_far, 1)
                    if k not in self._values:
                        self._values[k] = [v * base, base]
                    else:
                        self._values[k][0] += v * base
                        self._values[k][1] += base
            else:
                self._values[k] = [v, 1]
        self._seen_so_far = current
        now = time.time()
        time_per_unit = self._estimate_step_duration(current, now)
        if self.verbose == 1:
            if now - self._last_update < self.interval and not finalize:
                return
            self._print_bar(current, now, time_per_unit, finalize)
        elif self.verbose == 2 and finalize and self.target is not None and self.target > 0:
            digits = int(math.log10(self.target)) + 1
            info = f"{current:{digits}d}/{self.target} - {now - self._start:.0f}s -"
            info += _format_time(time_per_unit, self.unit_name)
            for k in self._values_order:
                avg = _average(self._values[k])
                info += f" - {k}: {avg:.4f}" if avg > 1e-3 else f" - {k}: {avg:.4e}"
            print_msg(info + "\n", line_break=False)
        self._last_update = now

    def _print_bar(self, current, now, time_per_unit, finalize):
        message = ("\b" * self._prev_total_width + "\r") if self._dynamic_display else "\n"
        special = 0   # characters of the colour codes, which take no room on screen
        if self.target is not None and self.target > 0:
            digits = int(math.log10(self.target)) + 1
            bar = f"\x1b[1m{current:{digits}d}/{self.target}\x1b[0m "
            special += 8
            done = int(self.width * float(current) / self.target)
            if done > 0:
                bar += f"\33[32m{'━' * done}\x1b[0m"
                special += 9
            bar += f"\33[37m{'━' * (self.width - done)}\x1b[0m"
            special += 9
        else:
            bar = f"{current:7d}/Unknown"
        message += bar
        if self.target is not None and self.target > 0 and not finalize:
            eta = time_per_unit * (self.target - current)
            if eta > 3600:
                eta_format = f"{int(eta // 3600)}:{int((eta % 3600) // 60):02d}:{int(eta % 60):02d}"
            elif eta > 60:
                eta_format = f"{int(eta // 60)}:{int(eta % 60):02d}"
            else:
                eta_format = f"{int(eta)}s"
            info = f" \x1b[1m{eta_format}\x1b[0m"
        else:
            info = f" \x1b[1m{now - self._start:.0f}s\x1b[0m"
        special += 8
        info += _format_time(time_per_unit, self.unit_name)
        for k in self._values_order:
            info += f" - {k}:"
            avg = _average(self._values[k])
            info += f" {avg:.4f}" if abs(avg) > 1e-3 else f" {avg:.4e}"
        message += info
        total_width = len(bar) + len(info) - special
        if self._prev_total_width > total_width:
            message += " " * (self._prev_total_width - total_width)
        if finalize:
            message += "\n"
        print_msg(message, line_break=False)
        self._prev_total_width = total_width

    def add(self, n, values=None):
        """`n` more steps done."""
        self.update(self._seen_so_far + n, values)

    def _estimate_step_duration(self, current, now):
        if not current:
            return 0
        if self._time_after_first_step is not None and current > 1:
            time_per_unit = (now - self._time_after_first_step) / (current - 1)
        else:
            time_per_unit = (now - self._start) / current
        if current == 1:
            self._time_after_first_step = now
        return time_per_unit
