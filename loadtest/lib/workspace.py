"""The machine and the work directory: file-descriptor limit, generated docroot."""

import os
import random
import resource

from . import textgen
from .common import DOCROOT, MANY_COUNT, MANY_SIZE, SIZES, TEXT_FILES, WORK


def raise_nofile():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = hard
    if os.geteuid() == 0 and hard != resource.RLIM_INFINITY and hard < 65536:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (65536, 65536))
            return 65536
        except (ValueError, OSError):
            pass
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    except (ValueError, OSError):
        want = soft
    return want


def write_text_files():
    """The compression cells' JavaScript and HTML (textgen), rewritten whenever
    the bytes on disk differ from what the generator makes."""
    sizes = {path: size for path, size in SIZES.values() if path in TEXT_FILES}
    for path, kind in TEXT_FILES.items():
        want = textgen.make(kind, sizes[path])
        f = os.path.join(DOCROOT, path.lstrip("/"))
        try:
            with open(f, "rb") as cur:
                if cur.read() == want:
                    continue
        except OSError:
            pass
        with open(f, "wb") as out:
            out.write(want)


def make_docroot():
    """Writes the cell files (once; rewritten if a size is wrong) and the path list
    of the random cell; returns the path list's file name."""
    os.makedirs(DOCROOT, exist_ok=True)
    rng = random.Random(42)
    for name, (path, size) in SIZES.items():
        if path is None or path in TEXT_FILES:
            continue
        f = os.path.join(DOCROOT, path.lstrip("/"))
        if not (os.path.isfile(f) and os.path.getsize(f) == size):
            with open(f, "wb") as out:
                out.write(rng.randbytes(size))
    write_text_files()
    many = os.path.join(DOCROOT, "many")
    marker = os.path.join(many, ".complete")
    if not os.path.exists(marker):
        os.makedirs(many, exist_ok=True)
        for i in range(MANY_COUNT):
            with open(os.path.join(many, f"{i:04d}.bin"), "wb") as out:
                out.write(rng.randbytes(MANY_SIZE))
        open(marker, "w").close()
    paths = os.path.join(WORK, "many-paths.txt")
    with open(paths, "w") as out:
        for i in range(MANY_COUNT):
            out.write(f"/many/{i:04d}.bin\n")
    return paths
