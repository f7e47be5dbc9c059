"""The CUDA emulator's source step: copies a .cu file to a .cpp file that g++ compiles against
csrc/cuda/emu/cuda_runtime.h, with each launch `kernel<<<grid, block, shared, stream>>>(args)`
written as `::emu::launch(::emu::LaunchConfig(grid, block, shared, stream).named("kernel"),
[=](auto&... a_) { kernel(a_...); }, args)` (captures by value: with LAMINA_CUDA_EMULATOR_STREAMS=lazy a
launch runs after its caller returned). Line numbers are kept (a launch stays on its lines), so compiler errors
and backtraces point into the .cu file (a #line directive names it).

    python rewrite.py INPUT.cu OUTPUT.cpp
"""
import os
import sys


def _skip_back_template(src, j):
    """src[j] == '>': the index of the matching '<'."""
    depth = 0
    while j >= 0:
        c = src[j]
        if c == '>':
            depth += 1
        elif c == '<':
            depth -= 1
            if depth == 0:
                return j
        j -= 1
    raise ValueError("unbalanced template arguments before a launch")


def _matching(src, i, open_c, close_c):
    """src[i] == open_c: the index of its closing character."""
    depth = 0
    while i < len(src):
        c = src[i]
        if c == open_c:
            depth += 1
        elif c == close_c:
            depth -= 1
            if depth == 0:
                return i
        i += 1
    raise ValueError(f"unbalanced '{open_c}' in a launch")


def rewrite(src, where=""):
    """`where`: the file's name, put with each launch's line into the kernel's profile name."""
    out, pos = [], 0
    while True:
        i = src.find("<<<", pos)
        if i < 0:
            out.append(src[pos:])
            return "".join(out)
        # the kernel expression: an identifier (with ::) and optional template arguments
        j = i - 1
        while j >= 0 and src[j].isspace():
            j -= 1
        if src[j] == '>':
            j = _skip_back_template(src, j) - 1
        while j >= 0 and (src[j].isalnum() or src[j] in "_:"):
            j -= 1
        start = j + 1
        kernel = src[start:i].strip()
        if not kernel:
            raise ValueError(f"no kernel name before '<<<' at offset {i}")
        end_cfg = src.find(">>>", i)
        cfg = src[i + 3:end_cfg]
        k = end_cfg + 3
        while src[k].isspace():
            k += 1
        if src[k] != '(':
            raise ValueError(f"no argument list after the launch of {kernel}")
        close = _matching(src, k, '(', ')')
        args = src[k + 1:close]
        name = " ".join(kernel.split()).replace('"', "'")
        if where:
            name += f" ({where}:{src.count(chr(10), 0, i) + 1})"
        launch = (f"::emu::launch(::emu::LaunchConfig({cfg}).named(\"{name}\"), "
                  f"[=](auto&... a_) {{ {kernel}(a_...); }}")
        launch += (", " + args if args.strip() else "") + ")"
        out.append(src[pos:start])
        out.append(launch)
        pos = close + 1


def main():
    src_path, dst_path = sys.argv[1], sys.argv[2]
    with open(src_path) as f:
        src = f.read()
    text = f'#line 1 "{os.path.abspath(src_path)}"\n' + rewrite(src, os.path.basename(src_path))
    tmp = dst_path + ".tmp"
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, dst_path)


if __name__ == "__main__":
    main()
