#!/usr/bin/env python3
"""Checks the shape of src/ that the README promises (run by .ci/run):

1. The HTTP core (src/http/) is pure: it names no socket, file, clock-reading or
   engine module, and has no `unsafe`.
2. No import cycles between modules. A module is a file under src/, except that a
   folder below a top-level folder counts as one module (src/http/plan/ is
   `http::plan`); a submodule reaching its own parent with `super::` is not an edge.
3. `unsafe` appears only in src/server/transport.rs, src/server/sched.rs (the idle
   watcher's scheduling policy: one libc call) and src/main.rs.

Exits non-zero with one line per violation.
"""

import pathlib
import re
import sys

SRC = pathlib.Path(__file__).resolve().parent.parent / "src"
CORE_FORBIDDEN = re.compile(
    r"\b(std::fs|std::net|std::process|libc::|rustix|polling|socket2|SystemTime::now|Instant::now"
    r"|crate::(files|server|config|stats|log_writer))\b"
)
UNSAFE_ALLOWED = {"server/transport.rs", "server/sched.rs", "main.rs"}


def module_of(path: pathlib.Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    if parts[-1] in ("mod", "lib", "main"):
        parts = parts[:-1]
    return "::".join(parts[:2]) or "crate"


def code_lines(text: str):
    """Lines without comments (line comments and doc comments)."""
    for n, line in enumerate(text.splitlines(), 1):
        stripped = line.split("//", 1)[0]
        yield n, stripped


def imports(path: pathlib.Path, text: str):
    """Modules named by `crate::a::b` and `super::x` paths in the file."""
    here = list(path.relative_to(SRC).with_suffix("").parts)
    is_mod = here[-1] in ("mod", "lib", "main")
    parent = here[:-2] if is_mod else here[:-1]
    for _, line in code_lines(text):
        for m in re.finditer(r"\bcrate::((?:[a-z_]+::)*[a-z_]+)", line):
            segs = m.group(1).split("::")
            yield resolve(segs)
        for m in re.finditer(r"\bsuper::((?:[a-z_]+::)*[a-z_A-Z]+)", line):
            segs = parent + m.group(1).split("::")
            yield resolve(segs)


def resolve(segs):
    """The module a path starting at the crate root lands in."""
    node = []
    for s in segs:
        cand = SRC.joinpath(*node, s)
        if cand.with_suffix(".rs").exists() or (cand / "mod.rs").exists():
            node.append(s)
        else:
            break
    return "::".join(node[:2]) or "crate"


def find_cycle(graph):
    state, stack = {}, []

    def visit(n):
        state[n] = 1
        stack.append(n)
        for m in sorted(graph.get(n, ())):
            if state.get(m) == 1:
                return stack[stack.index(m):] + [m]
            if m not in state:
                c = visit(m)
                if c:
                    return c
        stack.pop()
        state[n] = 2
        return None

    for n in sorted(graph):
        if n not in state:
            c = visit(n)
            if c:
                return c
    return None


def main() -> int:
    problems = []
    graph = {}
    for path in sorted(SRC.rglob("*.rs")):
        rel = str(path.relative_to(SRC))
        text = path.read_text()
        mod = module_of(path)
        in_tests = False
        for n, line in code_lines(text):
            if "#[cfg(test)]" in line:
                in_tests = True  # the rest of a file after #[cfg(test)] is its tests
            if rel.startswith("http/") and not in_tests and CORE_FORBIDDEN.search(line):
                problems.append(f"src/{rel}:{n}: the HTTP core must stay pure: {line.strip()}")
            if re.search(r"\bunsafe\b", line) and rel not in UNSAFE_ALLOWED and "forbid(unsafe_code)" not in line:
                problems.append(f"src/{rel}:{n}: unsafe outside {sorted(UNSAFE_ALLOWED)}")
        for target in imports(path, text):
            # A submodule using its own ancestors is how Rust modules are built.
            if target != mod and not mod.startswith(target + "::") and target != "crate":
                graph.setdefault(mod, set()).add(target)
    cycle = find_cycle(graph)
    if cycle:
        problems.append("import cycle: " + " -> ".join(cycle))
    for p in problems:
        print(p)
    if not problems:
        print(f"ok: {len(graph)} modules, pure core, no import cycles, unsafe only in {sorted(UNSAFE_ALLOWED)}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
