"""The output-folder rule, the atomic writer, stale staging folders and SIGTERM."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from simvos_trt.errors import OutputError
from simvos_trt.io import (
    OWNER_FILE,
    Owner,
    claim_and_clear,
    claim_folder,
    interrupt_on_sigterm,
    open_atomic,
    read_owner,
    staging_folder,
    swap_into_place,
    umask,
    write_atomic,
    write_owner,
)

SEG = Owner("simvos-segment", "video a")


def test_new_and_empty_folders_are_claimed_and_created(tmp_path):
    assert claim_folder(tmp_path / "a" / "b", SEG) is None
    assert (tmp_path / "a" / "b").is_dir()
    assert claim_folder(tmp_path / "a" / "b", SEG) is None  # still empty


@pytest.mark.parametrize("where, how", [("in", "is"), ("above", "holds"), ("below", "lies inside")])
def test_an_input_is_never_an_output(tmp_path, where, how):
    frames = tmp_path / "frames"
    frames.mkdir()
    (frames / "0.png").write_bytes(b"frame")
    out = {"in": frames, "above": tmp_path, "below": frames / "masks"}[where]
    with pytest.raises(OutputError, match=f"{how} the input"):
        claim_folder(out, SEG, inputs=[None, frames], force=True)
    assert (frames / "0.png").read_bytes() == b"frame" and not (frames / "masks").exists()


def test_a_folder_of_other_files_is_left_alone_even_with_force(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    for replace in (False, True):
        with pytest.raises(OutputError, match="did not write; it is left alone"):
            claim_folder(tmp_path, SEG, force=True, replace=replace)
    assert (tmp_path / "notes.txt").read_text() == "mine"


def test_our_own_output(tmp_path):
    write_owner(tmp_path, SEG)
    assert read_owner(tmp_path) == SEG
    assert claim_folder(tmp_path, SEG) == SEG  # the same source: written again
    with pytest.raises(OutputError, match="holds the output of video a; pass --force"):
        claim_folder(tmp_path, Owner("simvos-segment", "video b"))
    assert claim_folder(tmp_path, Owner("simvos-segment", "video b"), force=True) == SEG
    with pytest.raises(OutputError, match="holds the output of simvos-segment; choose another"):
        claim_folder(tmp_path, Owner("simvos-eval", "video a"), force=True)
    (tmp_path / OWNER_FILE).write_text("[1, 2]")  # a damaged record is no record
    with pytest.raises(OutputError, match="did not write"):
        claim_folder(tmp_path, SEG)


def test_claim_and_clear_deletes_the_files_of_another_source_only(tmp_path):
    out = tmp_path / "masks"
    assert claim_and_clear(out, SEG, "*.png") is None and read_owner(out) == SEG
    (out / "00000.png").write_bytes(b"a")
    (out / "notes.txt").write_text("kept")
    assert claim_and_clear(out, SEG, "*.png") == SEG and (out / "00000.png").is_file()  # same source: resumed
    other = Owner("simvos-segment", "video b")
    assert claim_and_clear(out, other, "*.png", force=True) == SEG
    assert sorted(p.name for p in out.iterdir()) == [OWNER_FILE, "notes.txt"] and read_owner(out) == other


def test_an_export_folder_is_recognised_by_its_manifest_and_replaced_only_with_force(tmp_path):
    (tmp_path / "manifest.json").write_text(json.dumps({"format": "simvos-trt/0"}))
    export = Owner("simvos-export")
    assert read_owner(tmp_path) == export
    with pytest.raises(OutputError, match="pass --force"):
        claim_folder(tmp_path, export, replace=True)
    assert claim_folder(tmp_path, export, replace=True, force=True) == export
    (tmp_path / "manifest.json").write_text(json.dumps({"format": "other-tool/1"}))
    with pytest.raises(OutputError, match="did not write"):
        claim_folder(tmp_path, export, replace=True, force=True)


def test_an_export_folder_holding_other_files_is_left_alone_even_with_force(tmp_path):
    graphs = {"query_encoder": {}, "aggregate": {}}
    (tmp_path / "manifest.json").write_text(json.dumps({"format": "simvos-trt/2", "graphs": graphs}))
    for name in ("query_encoder.onnx", "query_encoder.onnx.data", "query_encoder.engine", "aggregate.onnx",
                 "timing.cache", ".manifest.json.abc.tmp"):
        (tmp_path / name).write_bytes(b"ours")
    assert claim_folder(tmp_path, Owner("simvos-export"), replace=True, force=True) == Owner("simvos-export")
    (tmp_path / "thesis.tex").write_text("mine")
    (tmp_path / "old.onnx").write_bytes(b"mine")  # an .onnx of a graph the manifest does not list
    for force in (False, True):
        with pytest.raises(OutputError, match=r"did not write \(old.onnx, thesis.tex\); it is left alone"):
            claim_folder(tmp_path, Owner("simvos-export"), replace=True, force=force)


def test_the_current_folder_is_never_replaced(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for out in (".", "..", str(tmp_path)):
        with pytest.raises(OutputError, match="current folder"):
            claim_folder(out, Owner("simvos-export"), replace=True, force=True)


def test_a_file_or_an_unwritable_place(tmp_path):
    (tmp_path / "f").write_text("x")
    with pytest.raises(OutputError, match="is a file"):
        claim_folder(tmp_path / "f", SEG)
    with pytest.raises(OutputError, match="cannot write there"):
        claim_folder(tmp_path / "f" / "out", SEG)  # a file where a folder must be


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_a_read_only_folder(tmp_path):
    tmp_path.chmod(0o555)
    try:
        with pytest.raises(OutputError, match="cannot write there"):
            claim_folder(tmp_path / "out", SEG)
    finally:
        tmp_path.chmod(0o755)


def test_write_atomic_takes_text_and_bytes(tmp_path):
    write_atomic(tmp_path / "a.txt", "é\n")
    write_atomic(tmp_path / "b.bin", b"\0\1")
    assert (tmp_path / "a.txt").read_text(encoding="utf-8") == "é\n" and (tmp_path / "b.bin").read_bytes() == b"\0\1"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.txt", "b.bin"]


def test_open_atomic_leaves_nothing_when_the_block_fails(tmp_path):
    (tmp_path / "a.zip").write_bytes(b"old")
    with pytest.raises(RuntimeError), open_atomic(tmp_path / "a.zip") as f:
        f.write(b"half")
        raise RuntimeError("stopped")
    assert [p.name for p in tmp_path.iterdir()] == ["a.zip"] and (tmp_path / "a.zip").read_bytes() == b"old"
    with open_atomic(tmp_path / "a.zip") as f:
        f.write(b"new")
    assert (tmp_path / "a.zip").read_bytes() == b"new" and len(list(tmp_path.iterdir())) == 1


@pytest.mark.parametrize("mask", [0o022, 0o077, 0o002])
def test_modes_follow_the_umask(tmp_path, mask):
    previous = os.umask(mask)
    try:
        assert umask() == mask
        write_atomic(tmp_path / "a.txt", "x")
        staged = staging_folder(tmp_path / "out")
        (tmp_path / "plain").write_text("x")  # what open() gives, for comparison
    finally:
        os.umask(previous)
    assert (tmp_path / "a.txt").stat().st_mode & 0o777 == 0o666 & ~mask == (tmp_path / "plain").stat().st_mode & 0o777
    assert staged.stat().st_mode & 0o777 == 0o777 & ~mask


def test_a_failed_swap_puts_the_previous_output_back(tmp_path, monkeypatch):
    out, tmp = tmp_path / "bs", staging_folder(tmp_path / "bs")
    out.mkdir()
    (out / "manifest.json").write_text("old")
    (tmp / "manifest.json").write_text("new")
    rename = Path.rename

    def failing(self, target):
        if self == tmp:
            raise OSError(28, "No space left on device")
        return rename(self, target)

    monkeypatch.setattr(Path, "rename", failing)
    with pytest.raises(OSError, match="No space"):
        swap_into_place(tmp, out)
    monkeypatch.undo()
    assert (out / "manifest.json").read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["bs", tmp.name])  # nothing hidden aside


def test_an_output_moved_aside_by_a_killed_swap_is_put_back(tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True, check=True)
    aside = tmp_path / f".bs.old-{int(dead.stdout)}-123"  # killed between its two renames: bs is gone
    aside.mkdir()
    (aside / "manifest.json").write_text("the previous export")
    staging_folder(tmp_path / "bs")
    assert (tmp_path / "bs" / "manifest.json").read_text() == "the previous export" and not aside.exists()


def test_staging_folders_of_killed_runs_are_removed_live_ones_kept(tmp_path, caplog):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True, check=True)
    pid = int(dead.stdout)
    out = tmp_path / "bs"
    out.mkdir()  # so the stale .old is not put back (test_an_output_moved_aside_by_a_killed_swap_is_put_back)
    stale = [tmp_path / f".bs.partial-{pid}-x1y2", tmp_path / f".bs.old-{pid}-123"]
    live = tmp_path / f".bs.partial-{os.getpid()}-abcd"
    legacy, other = tmp_path / ".bs.partial-k3j4", tmp_path / f".bsx.partial-{pid}-x"
    for d in (*stale, live, legacy, other):
        d.mkdir()
        (d / "graph.onnx").write_bytes(b"56 MB")
    tmp = staging_folder(out)
    assert tmp.is_dir() and tmp.name.startswith(f".bs.partial-{os.getpid()}-")
    assert not any(d.exists() for d in stale)
    assert live.is_dir() and legacy.is_dir() and other.is_dir()
    assert "older version" in caplog.text
    (tmp / "manifest.json").write_text("{}")
    swap_into_place(tmp, out)
    assert (out / "manifest.json").is_file() and not tmp.exists()


def test_sigterm_raises_keyboard_interrupt():
    previous = signal.getsignal(signal.SIGTERM)
    try:
        interrupt_on_sigterm()
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(1)  # the handler runs at once; this is only a fallback
    finally:
        signal.signal(signal.SIGTERM, previous)
