"""Runs the guide-style Keras scripts of this folder with real Keras and with lamina, and compares.

Each script `sNN_*.py` is run twice, each time in its own subprocess and a fresh working folder:
once as written with Keras 3 on JAX (`KERAS_BACKEND=jax`), once with its keras imports swapped
for lamina's (`import keras` -> `import lamina as keras`, `from keras ...` -> `from lamina ...`;
nothing else changes) in a temporary copy. lamina is imported from the caller's environment
(PYTHONPATH or an install). A script ends by printing `RESULT {json}`:

    {"figures": {...}, "checks": {"what": true, ...}, "info": {...}}

`checks` are the script's own thresholds (all must be true), `figures` are compared between the
two runs (see `figures_agree`), `info` is shown and never compared.

    PYTHONPATH=.dev python tests/keras_scripts/run_scripts.py [--only s01,s07] [--no-keras]
        [--timeout 180] [--markdown tests/keras_scripts/README.md]

With --markdown, the table replaces the text between the markers `<!-- results:start -->` and
`<!-- results:end -->` of FILE (the whole file when it has no markers). Scripts run one after
the other, Keras then lamina, never in parallel.
"""
import argparse
import datetime
import json
import math
import os
import platform
import re
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
START, END = "<!-- results:start -->", "<!-- results:end -->"

# how figures compare: the two runs start from different random weights, so what training reaches
# is compared loosely; shapes, names, counts and values computed without training exactly.
LOSS_FACTOR, LOSS_ABS = 3.0, 0.05          # keys naming a loss or an error (loss, mse, mae)
ACCURACY_ABS = 0.1                          # keys naming an accuracy, a recall or a rate
RTOL, ATOL = 1e-3, 1e-6                     # every other float
TOLERANCES = (f"losses and errors (keys with loss/mse/mae) within a factor of {LOSS_FACTOR:g} or "
              f"{LOSS_ABS:g} apart; accuracies and rates (acc/recall/rate) within {ACCURACY_ABS:g}; other "
              f"floats within rtol {RTOL:g}; ints, strings, shapes, names and flags equal")


def scripts(only=None):
    names = sorted(f for f in os.listdir(HERE) if re.fullmatch(r"s\d\d_\w+\.py", f))
    if only:
        wanted = [w.strip() for w in only.split(",") if w.strip()]
        names = [n for n in names if any(n.startswith(w) for w in wanted)]
    return [os.path.join(HERE, n) for n in names]


def scenario(path):
    """The script's "# Scenario: ..." line, up to its first parenthesis."""
    with open(path) as f:
        for line in f:
            if line.startswith("# Scenario:"):
                return line[len("# Scenario:"):].split(" (")[0].strip().rstrip(":")
    return ""


def to_lamina(source, name="script"):
    """The script with its keras imports swapped for lamina's; raises if it does not start with
    `import keras` or if a keras import would be left."""
    if source.split("\n", 1)[0] != "import keras":
        raise ValueError(f"{name}: the first line must be exactly 'import keras'")
    out = re.sub(r"^(\s*)import keras$", r"\1import lamina as keras", source, flags=re.M)
    out = re.sub(r"^(\s*)from keras(?=[ .])", r"\1from lamina", out, flags=re.M)
    left = re.findall(r"^\s*(?:import keras\b|from keras\b).*$", out, flags=re.M)
    if left:
        raise ValueError(f"{name}: keras import left after the swap: {left[0].strip()!r}")
    return out


def error_line(stderr):
    """The exception line of a traceback (the last `SomethingError: ...` line), else the last line."""
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    for line in reversed(lines):
        if re.match(r"^[A-Za-z_][\w.]*(Error|Exception|Exit|Interrupt|Warning)\b:?", line):
            return line
    return lines[-1] if lines else ""


def run(path, library, timeout, env=None):
    """Runs one script with "keras" or "lamina"; returns a dict: status (ran / failed / timeout),
    seconds, result (the RESULT json or None), error (first error line)."""
    env = dict(os.environ if env is None else env)
    if env.get("PYTHONPATH"):  # the child runs in a temporary folder: make `.dev` absolute
        env["PYTHONPATH"] = os.pathsep.join(os.path.abspath(p) for p in env["PYTHONPATH"].split(os.pathsep) if p)
    with tempfile.TemporaryDirectory(prefix=f"ks_{library}_") as work:
        if library == "keras":
            env["KERAS_BACKEND"] = "jax"
            target = path
        else:
            with open(path) as f:
                source = to_lamina(f.read(), os.path.basename(path))
            target = os.path.join(work, os.path.basename(path))
            with open(target, "w") as f:
                f.write(source)
        start = time.perf_counter()
        try:
            proc = subprocess.run([sys.executable, target], cwd=work, env=env, capture_output=True, text=True,
                                  timeout=timeout)
        except subprocess.TimeoutExpired:
            return {"status": "timeout", "seconds": time.perf_counter() - start, "result": None,
                    "error": f"timed out after {timeout} s", "stdout": "", "stderr": ""}
        seconds = time.perf_counter() - start
    result = None
    for line in proc.stdout.splitlines():
        if line.startswith("RESULT "):
            try:
                result = json.loads(line[len("RESULT "):])
            except json.JSONDecodeError as e:
                return {"status": "failed", "seconds": seconds, "result": None, "stdout": proc.stdout,
                        "stderr": proc.stderr, "error": f"RESULT line is not JSON: {e}"}
    if proc.returncode != 0 or result is None:
        error = error_line(proc.stderr) if proc.returncode != 0 else "exited 0 without a RESULT line"
        return {"status": "failed", "seconds": seconds, "result": None, "error": error,
                "stdout": proc.stdout, "stderr": proc.stderr}
    return {"status": "ran", "seconds": seconds, "result": result, "error": "", "stdout": proc.stdout,
            "stderr": proc.stderr}


def failed_checks(result):
    return [name for name, ok in (result or {}).get("checks", {}).items() if ok is not True]


def _kind(key):
    k = key.lower()
    if any(w in k for w in ("loss", "mse", "mae")):
        return "loss"
    if any(w in k for w in ("acc", "recall", "rate")) and "learning_rate" not in k:
        return "accuracy"
    return "exact"


def _close(a, b, kind):
    if isinstance(a, bool) or isinstance(b, bool) or not isinstance(a, (int, float)) \
            or not isinstance(b, (int, float)):
        return a == b
    if kind == "loss":
        if abs(a - b) <= LOSS_ABS:
            return True
        return a > 0 and b > 0 and max(a, b) / min(a, b) <= LOSS_FACTOR
    if kind == "accuracy":
        return abs(a - b) <= ACCURACY_ABS
    if isinstance(a, int) and isinstance(b, int):
        return a == b
    return math.isclose(a, b, rel_tol=RTOL, abs_tol=ATOL)


def _same(a, b, kind):
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k], kind) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same(x, y, kind) for x, y in zip(a, b))
    return _close(a, b, kind)


def figures_agree(keras_result, lamina_result):
    """The figure names whose values differ beyond the tolerances (empty: they agree)."""
    k, l = keras_result.get("figures", {}), lamina_result.get("figures", {})
    return [key for key in sorted(set(k) | set(l))
            if key not in k or key not in l or not _same(k[key], l[key], _kind(key))]


def _short(value, limit=60):
    text = json.dumps(value)
    return text if len(text) <= limit else text[:limit - 3] + "..."


def compare(path, keras_run, lamina_run):
    row = {"script": os.path.basename(path), "scenario": scenario(path), "keras": keras_run, "lamina": lamina_run,
           "notes": []}
    for name, r in (("Keras", keras_run), ("lamina", lamina_run)):
        if r is None:
            continue
        if r["status"] != "ran":
            error = r["error"] if len(r["error"]) <= 160 else r["error"][:157] + "..."
            row["notes"].append(f"{name} {r['status']}: `{error}`")
        elif failed_checks(r["result"]):
            row["notes"].append(f"{name} check failed: {', '.join(failed_checks(r['result']))}")
    row["agree"] = None
    if keras_run and lamina_run and keras_run["status"] == lamina_run["status"] == "ran":
        diff = figures_agree(keras_run["result"], lamina_run["result"])
        row["agree"] = not diff
        for key in diff:
            kv = keras_run["result"].get("figures", {}).get(key, "(missing)")
            lv = lamina_run["result"].get("figures", {}).get(key, "(missing)")
            row["notes"].append(f"`{key}`: Keras {_short(kv)}, lamina {_short(lv)}")
    return row


def _cell(r):
    if r is None:
        return "not run"
    if r["status"] != "ran":
        return r["status"]
    bad = failed_checks(r["result"])
    return "ran, checks pass" if not bad else f"ran, {len(bad)} check{'s' if len(bad) > 1 else ''} failed"


def _secs(r):
    return "" if r is None else f"{r['seconds']:.1f}"


def _output(args, **kwargs):
    """A command's stdout, stripped ("" when it cannot run)."""
    try:
        return subprocess.run(args, capture_output=True, text=True, timeout=120, **kwargs).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        return ""


def environment():
    def version(module):
        code = f"import {module} as m; print(m.__version__)"
        return _output([sys.executable, "-c", code], env=dict(os.environ, KERAS_BACKEND="jax")) or "not installed"

    def lamina_commit():
        where = _output([sys.executable, "-c", "import os, lamina; print(os.path.realpath(lamina.__file__))"])
        head = _output(["git", "-C", os.path.dirname(where) or ".", "rev-parse", "--short", "HEAD"]) if where else ""
        if not head:
            return ""
        dirty = _output(["git", "-C", os.path.dirname(where), "status", "--porcelain", "--untracked-files=no"])
        return f" at {head}" + (" with uncommitted changes" if dirty else "")

    cpu = ""
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), "")
    except OSError:
        pass
    return {"date": datetime.date.today().isoformat(), "python": platform.python_version(),
            "cpu": f"{os.cpu_count()} cores, {cpu or platform.processor() or platform.machine()}",
            "keras": version("keras"), "jax": version("jax"), "lamina": version("lamina") + lamina_commit(),
            "LAMINA_NUM_THREADS": os.environ.get("LAMINA_NUM_THREADS", "unset (all cores)"),
            "load": " ".join(f"{v:.2f}" for v in os.getloadavg()) if hasattr(os, "getloadavg") else "?"}


def summary(rows):
    n, parts = len(rows), []
    for lib, name in (("keras", "Keras"), ("lamina", "lamina")):
        runs = [r[lib] for r in rows if r[lib] is not None]
        if runs:
            ran = [r for r in runs if r["status"] == "ran"]
            passed = sum(1 for r in ran if not failed_checks(r["result"]))
            parts.append(f"{name} ran {len(ran)}/{n} (checks pass in {passed})")
    both = [r for r in rows if r["agree"] is not None]
    if both:
        parts.append(f"figures agree in {sum(1 for r in both if r['agree'])} of the {len(both)} both ran")
    return "; ".join(parts) + "."


def markdown(rows, env):
    lines = [f"Measured {env['date']} on {env['cpu']}; Python {env['python']}, Keras {env['keras']} "
             f"(JAX {env['jax']}), lamina {env['lamina']}; LAMINA_NUM_THREADS {env['LAMINA_NUM_THREADS']}; "
             f"load average at the start {env['load']}.", "",
             f"**{summary(rows)}**", "",
             "| script | scenario | Keras | lamina | figures agree | Keras s | lamina s | notes |",
             "| --- | --- | --- | --- | --- | ---: | ---: | --- |"]
    for r in rows:
        agree = {None: "", True: "yes", False: "no"}[r["agree"]]
        notes = "; ".join(r["notes"]).replace("|", "\\|")
        lines.append(f"| `{r['script']}` | {r['scenario']} | {_cell(r['keras'])} | {_cell(r['lamina'])} | {agree} | "
                     f"{_secs(r['keras'])} | {_secs(r['lamina'])} | {notes} |")
    lines += ["", f"Tolerances: {TOLERANCES}. Times are wall seconds per script, Python start-up and "
              "imports included."]
    return "\n".join(lines)


def write_markdown(path, table):
    text = open(path).read() if os.path.exists(path) else ""
    if START in text and END in text:
        head, rest = text.split(START, 1)
        text = head + START + "\n" + table + "\n" + END + rest.split(END, 1)[1]
    else:
        text = START + "\n" + table + "\n" + END + "\n"
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, path)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--only", help="comma-separated script prefixes, e.g. s01,s07")
    parser.add_argument("--no-keras", action="store_true", help="run lamina only")
    parser.add_argument("--no-lamina", action="store_true", help="run Keras only")
    parser.add_argument("--timeout", type=float, default=180, help="seconds per run (default 180)")
    parser.add_argument("--markdown", metavar="FILE", help="write the table into FILE")
    parser.add_argument("--verbose", action="store_true", help="print each failed run's stderr")
    args = parser.parse_args(argv)

    env = environment()
    rows = []
    for path in scripts(args.only):
        keras_run = None if args.no_keras else run(path, "keras", args.timeout)
        lamina_run = None if args.no_lamina else run(path, "lamina", args.timeout)
        row = compare(path, keras_run, lamina_run)
        rows.append(row)
        print(f"{row['script']:32s} Keras: {_cell(keras_run):24s} {_secs(keras_run):>6s}s   "
              f"lamina: {_cell(lamina_run):24s} {_secs(lamina_run):>6s}s   "
              f"agree: {({None: '-', True: 'yes', False: 'no'})[row['agree']]}", flush=True)
        for note in row["notes"]:
            print(f"    {note}")
        if args.verbose:
            for name, r in (("Keras", keras_run), ("lamina", lamina_run)):
                if r is not None and r["status"] != "ran":
                    print(f"--- {name} stderr:\n{r['stderr'][-3000:]}")
    print(summary(rows))
    if args.markdown:
        write_markdown(args.markdown, markdown(rows, env))
        print(f"table written to {args.markdown}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
