#!/usr/bin/env python3
"""Checks who may include whom: each folder of include/qrl, the envs, the
examples' shared code and the tests (docs/architecture.md, "Layers of the
system", draws the same table). A folder may include its own headers and those
of the folders listed for it, nothing above it; the check fails naming the file,
the line and the folders that folder may use.

    check_layers.py SOURCE_DIR
"""
import pathlib
import re
import sys

# Lower layers first; each folder lists what it may include besides itself.
ALLOWED = {
    "core": set(),
    "kernels": {"core"},
    "backend": {"core", "kernels"},
    "tensor.hpp": {"core", "backend"},
    "io": {"core"},
    "env": {"core", "kernels"},
    "nn": {"core", "kernels", "backend", "tensor.hpp", "io", "version.hpp"},
    "optim": {"core", "kernels", "backend", "tensor.hpp", "nn"},
    "log": {"core", "io", "env"},
    "rl": {"core", "kernels", "backend", "tensor.hpp", "io", "env", "nn", "optim", "version.hpp"},
    "envs": {"core", "kernels", "io", "env", "envs", "cdp"},
}
INCLUDE = re.compile(r'^\s*#\s*include\s*<qrl/([A-Za-z0-9_.]+)')
LOCAL = re.compile(r'^\s*#\s*include\s*"([^"]+)"')


def main():
    root = pathlib.Path(sys.argv[1])
    problems = []

    def check(path, layer, allowed, local_ok=None):
        for number, line in enumerate(path.read_text().splitlines(), 1):
            m = INCLUDE.match(line)
            if m and m.group(1) != layer and m.group(1) not in allowed:
                problems.append(f"{path.relative_to(root)}:{number}: '{layer}' may not include <qrl/{m.group(1)}...> "
                                f"(it may include {', '.join(sorted(allowed)) or 'nothing outside itself'})")
            m = LOCAL.match(line)
            if m and local_ok is not None and not local_ok(m.group(1)):
                problems.append(f"{path.relative_to(root)}:{number}: \"{m.group(1)}\" is not an installed header "
                                f"or one of the tests' own support headers")

    headers = lambda folder: sorted(p for p in folder.rglob("*") if p.suffix in (".hpp", ".cuh", ".h"))
    for folder in sorted((root / "include/qrl").iterdir()):
        if folder.is_dir():
            if folder.name not in ALLOWED:
                problems.append(f"include/qrl/{folder.name}: a folder with no place in check_layers.py's table")
                continue
            for path in headers(folder):
                check(path, folder.name, ALLOWED[folder.name])
    for env_dir in sorted((root / "envs").iterdir()):
        for path in headers(env_dir) + sorted(env_dir.rglob("*.cpp")):
            check(path, "envs", ALLOWED["envs"])
    # The tests use qrl as a user does: installed headers, plus their own support headers.
    for path in sorted((root / "tests").glob("*.[ch]pp")):
        check(path, "tests", set(ALLOWED) | {"cdp", "qrl.hpp", "version.hpp"},
              local_ok=lambda name: "/" not in name and name.endswith("support.hpp"))

    for problem in problems:
        print(problem)
    print(f"check_layers: {len(problems)} problem(s)")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
