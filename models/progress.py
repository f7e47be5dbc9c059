"""What fit/evaluate/predict print: a tqdm bar at verbose=1; at verbose=2 (what "auto" becomes
off a terminal) Keras's line per epoch, e.g. "8/8 - 0s - 3ms/step - accuracy: 0.9000 - loss: 0.2718",
after an "Epoch 1/5" line when fit runs several epochs.

As Keras's: after `lamina.utils.disable_interactive_logging()` nothing is drawn on the terminal;
Keras's progress bar (`lamina.utils.Progbar`) and lines go to the "lamina" logger instead; and a
`callbacks.ProgbarLogger` passed to fit/evaluate/predict is the display (`shown_by_callbacks`),
not a second one beside lamina's."""
import math
import sys
import time

from .._progbar import Progbar, is_interactive_logging_enabled, print_msg
from ..callbacks import ProgbarLogger, pythonify_logs


def resolve_verbose(verbose):
    if verbose == "auto":
        return 1 if sys.stdout.isatty() else 2
    if verbose not in (0, 1, 2):
        raise ValueError(f"verbose must be 0, 1, 2 or 'auto', received {verbose!r}")
    return verbose


def shown_by_callbacks(callbacks):
    """Whether the user's callbacks include a ProgbarLogger, which then shows the progress (at
    the verbose level given to fit/evaluate/predict) in place of lamina's own display, as
    Keras's CallbackList uses a ProgbarLogger it is given instead of adding its own."""
    return any(isinstance(c, ProgbarLogger) for c in callbacks or ())


class Progress:
    """One epoch (or one evaluate/predict pass) of `total` steps (None when unknown)."""

    def __init__(self, verbose, total, desc, header=None):
        self.verbose, self.total, self.seen = verbose, total, 0
        self.start = time.time()
        self.bar = self.progbar = None
        interactive = is_interactive_logging_enabled()
        if verbose == 1 and interactive:
            from tqdm import tqdm
            self.bar = tqdm(total=total, desc=desc, unit="step", leave=True, dynamic_ncols=True)
        elif verbose == 1:  # Keras's bar, its updates logged as Keras's are
            if header:
                print_msg(header)
            self.progbar = Progbar(total, verbose=1, unit_name="step", stateless_metrics=set())
        elif verbose == 2 and header:
            print_msg(header)

    def wants(self, seen):
        """Whether update(seen, logs) shows the logs: every 10 steps and at the last (each showing
        reads them back from the device)."""
        return (self.bar is not None or self.progbar is not None) and \
            (seen // 10 != self.seen // 10 or seen == self.total)

    def update(self, seen, logs=None):
        """`seen` steps done."""
        if self.bar is not None:
            show = logs and self.wants(seen)
            self.bar.update(seen - self.seen)
            if show:
                self.bar.set_postfix_str(_fmt(pythonify_logs(logs)), refresh=False)
        elif self.progbar is not None:
            values = _values(pythonify_logs(logs)) if logs and self.wants(seen) else None
            self.progbar.update(seen, values, finalize=False)
        self.seen = seen

    def close(self, logs=None):
        if self.bar is not None:
            if logs:
                self.bar.set_postfix_str(_fmt(logs), refresh=True)
            self.bar.close()
        elif self.progbar is not None:
            if self.progbar.target is None:
                self.progbar.target = self.seen
            self.progbar.update(self.seen, _values(logs) if logs else None, finalize=True)
        elif self.verbose == 2 and self.seen:
            print_msg(summary_line(self.seen, self.total or self.seen, time.time() - self.start, logs))


def summary_line(seen, total, seconds, logs):
    """Keras's verbose=2 line (keras.utils.Progbar)."""
    digits = int(math.log10(total)) + 1
    line = f"{seen:{digits}d}/{total} - {seconds:.0f}s - {_per_step(seconds / seen)}"
    for k, v in (logs or {}).items():
        if isinstance(v, (int, float)):
            line += f" - {k}: {v:.4f}" if v > 1e-3 else f" - {k}: {v:.4e}"
    return line


def _per_step(t):
    if t >= 1 or t == 0:
        return f"{t:.0f}s/step"
    if t >= 1e-3:
        return f"{t * 1e3:.0f}ms/step"
    return f"{t * 1e6:.0f}us/step"


def _values(logs):
    return [(k, v) for k, v in logs.items() if isinstance(v, (int, float))]


def _fmt(logs):
    return " - ".join(f"{k}: {v:.4f}" for k, v in logs.items() if isinstance(v, (int, float)))
