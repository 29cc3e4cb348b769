"""Files the tools write: the one atomic writer, and the one rule for output folders (docs/design.md)."""

from __future__ import annotations

import contextlib
import glob
import json
import logging
import os
import re
import shutil
import signal
import tempfile
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from .errors import OutputError

log = logging.getLogger(__name__)

MANIFEST = "manifest.json"
OWNER_FILE = ".simvos-trt.json"
#: What an export folder holds besides its manifest: per graph these files, and the engines' timing cache.
EXPORT_SUFFIXES = (".onnx", ".onnx.data", ".engine")
TIMING_CACHE = "timing.cache"
PathLike = str | os.PathLike[str]


def umask() -> int:
    """The process's umask, read without changing it where Linux shows it (``/proc/self/status``)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)  # elsewhere: set and restore it (another thread creating a file meanwhile gets 022)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def open_atomic(path: PathLike) -> Iterator[BinaryIO]:
    """A binary file to write ``path`` through: a temporary file beside it, ``os.replace``d there when the
    block ends without an error (removed otherwise), so ``path`` is never seen half written; the file gets the
    mode a plain ``open`` would give it (0666 less the umask)."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            yield f
        os.chmod(tmp, 0o666 & ~umask())  # mkstemp creates 0600
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_atomic(path: PathLike, data: bytes | str) -> None:
    """Write ``data`` (str as UTF-8) to ``path`` through ``open_atomic``."""
    with open_atomic(path) as f:
        f.write(data.encode() if isinstance(data, str) else data)


def write_json_atomic(path: PathLike, data: Any) -> None:
    """``write_atomic`` of ``data`` as indented JSON."""
    write_atomic(path, json.dumps(data, indent=1) + "\n")


@dataclass(frozen=True)
class Owner:
    """Who wrote an output folder: the tool, and the input its contents derive from."""

    tool: str
    source: str = ""


def read_owner(folder: Path) -> Owner | None:
    """The record of ``folder``: its ``OWNER_FILE``, or an export's manifest; None without one."""
    try:
        if (folder / OWNER_FILE).is_file():
            d = json.loads((folder / OWNER_FILE).read_text())
            return Owner(str(d["tool"]), str(d["source"]))
        if json.loads((folder / MANIFEST).read_text())["format"].startswith("simvos-trt/"):
            return Owner("simvos-export")
    except (OSError, ValueError, LookupError, TypeError, AttributeError):
        pass
    return None


def write_owner(folder: Path, owner: Owner) -> None:
    write_json_atomic(folder / OWNER_FILE, {"tool": owner.tool, "source": owner.source})


def check_not_input(path: PathLike, inputs: Iterable[PathLike | None], option: str = "--out") -> None:
    """Raise OutputError when ``path`` is, holds or lies inside one of ``inputs``."""
    target = Path(path).resolve()
    for given in inputs:
        if given is None:
            continue
        src = Path(given).resolve()
        if target == src:
            how = "is"
        elif src in target.parents:
            how = "lies inside"
        elif target in src.parents:
            how = "holds"
        else:
            continue
        raise OutputError(f"{option} {path} {how} the input {given}; writing there could destroy it: "
                          "choose a path outside the inputs")


def ensure_writable(folder: PathLike, option: str = "--out") -> Path:
    """Create ``folder`` if needed and check that a file can be written in it."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(dir=folder, prefix=".simvos-write-test-")
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise OutputError(f"{option} {folder}: cannot write there ({exc.strerror or exc}); "
                          "choose a writable folder") from exc
    return folder


def claim_folder(out: PathLike, owner: Owner, *, inputs: Iterable[PathLike | None] = (), force: bool = False,
                 replace: bool = False, option: str = "--out") -> Owner | None:
    """Decide whether ``owner`` may write into ``out`` (with ``replace``: replace it whole); return the record
    of the output already there (None when new or empty). Raises OutputError naming why not."""
    out = Path(out)
    check_not_input(out, inputs, option)
    if out.exists() and not out.is_dir():
        raise OutputError(f"{option} {out} is a file, not a folder; choose another path")
    if replace and out.resolve() in (Path.cwd(), *Path.cwd().parents):
        raise OutputError(f"{option} {out} is or holds the current folder, which cannot be replaced; "
                          "give a new folder, e.g. engines/<name>")
    found = None
    if out.is_dir() and any(out.iterdir()):
        found = read_owner(out)
        others = foreign_files(out) if found is not None and not (out / OWNER_FILE).is_file() else []
        if found is None or others:
            listed = f" ({', '.join(others[:5])}, ...)" if len(others) > 5 else f" ({', '.join(others)})"
            what = listed if others else ""
            raise OutputError(f"{option} {out} holds files that {owner.tool} did not write{what}; it is left alone "
                              "(even with --force): choose a new or empty folder, or move those files")
        if found.tool != owner.tool:
            raise OutputError(f"{option} {out} holds the output of {found.tool}; choose another folder")
        if not force and (replace or found.source != owner.source):
            what = f" of {found.source}" if found.source else ""
            raise OutputError(f"{option} {out} already holds the output{what}; pass --force to replace it, "
                              "or choose another folder")
    ensure_writable(out.parent if replace else out, option)
    return found


def claim_and_clear(out: PathLike, owner: Owner, pattern: str, *, inputs: Iterable[PathLike | None] = (),
                    force: bool = False, option: str = "--out", resume: bool = True) -> Owner | None:
    """``claim_folder`` for a folder of files matching ``pattern`` (``*.png``, ``*/*.png``): the files of an
    earlier output are deleted before ``owner`` is recorded; returns the earlier record. With ``resume`` an
    output of the same source is kept (a run resumes it), else it is replaced too."""
    out = Path(out)
    found = claim_folder(out, owner, inputs=inputs, force=force, option=option)
    if found is not None and not (resume and found.source == owner.source):
        for old in out.glob(pattern):
            old.unlink()
    write_owner(out, owner)
    return found


def foreign_files(folder: Path) -> list[str]:
    """The names in export ``folder`` that no export or build writes: not its manifest, a file of a graph it
    lists (``EXPORT_SUFFIXES``), the timing cache, or a temporary file of ``write_atomic``."""
    try:
        graphs = json.loads((folder / MANIFEST).read_text()).get("graphs", {})
    except (OSError, ValueError, AttributeError):
        graphs = {}
    ours = {MANIFEST, TIMING_CACHE} | {f"{graph}{suffix}" for graph in graphs for suffix in EXPORT_SUFFIXES}
    return sorted(p.name for p in folder.iterdir()
                  if p.name not in ours and not (p.name.startswith(".") and p.name.endswith(".tmp")))


def staging_folder(out: Path) -> Path:
    """A new hidden folder beside ``out`` to build it in. Left-overs of killed runs are cleared first: staging
    folders removed, and a previous output a killed swap had moved aside put back (``swap_into_place``)."""
    for path in out.parent.glob(f".{glob.escape(out.name)}.*-*"):
        m = re.fullmatch(re.escape(f".{out.name}") + r"\.(partial|old)-(\d+)-[^/]+", path.name)
        if m and not _alive(int(m.group(2))):
            if m.group(1) == "old" and not out.exists():
                log.warning("putting %s back to %s: a run was killed while replacing it", path, out)
                path.rename(out)
                continue
            log.warning("removing %s, left by an export that was killed", path)
            shutil.rmtree(path, ignore_errors=True)
        elif not m and re.fullmatch(re.escape(f".{out.name}") + r"\.(?:partial|old)-\w+", path.name):
            log.warning("%s looks left by an interrupted export of an older version; remove it", path)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.partial-{os.getpid()}-", dir=out.parent))
    tmp.chmod(0o777 & ~umask())  # mkdtemp creates 0700
    return tmp


def swap_into_place(tmp: Path, out: Path) -> None:
    """Move the finished staging folder ``tmp`` to ``out``, replacing what was there: the previous output is
    moved aside, and put back if the move fails (a later ``staging_folder`` puts it back after a kill)."""
    old = None
    if out.exists():
        old = out.with_name(f".{out.name}.old-{os.getpid()}-{time.time_ns()}")
        out.rename(old)
    try:
        tmp.rename(out)
    except BaseException:
        if old is not None:
            old.rename(out)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's
        pass
    return True


def interrupt_on_sigterm() -> None:
    """Make SIGTERM raise KeyboardInterrupt, so a terminated command cleans up as after Ctrl-C."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, signal.default_int_handler)  # raises KeyboardInterrupt
