"""simvos-segment --server writes what local simvos-segment writes; the CLIs' errors are one line, exit 2."""

from __future__ import annotations

import json
import socket
import subprocess

import cv2
import numpy as np
import pytest
from videos import moving_video

from simvos_trt.cli import segment, serve
from simvos_trt.runtime.png import read_index_png, write_index_png


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    root = tmp_path_factory.mktemp("clip")
    frames, mask = moving_video(4, 72, 100, objects=2, seed=11)
    (root / "frames").mkdir()
    for i, f in enumerate(frames):
        cv2.imwrite(str(root / "frames" / f"{i:05d}.jpg"), f[:, :, ::-1])
    write_index_png(root / "mask.png", np.where(mask == 2, 9, mask).astype(np.uint8))
    (root / "masks").mkdir()  # sparse annotations: 1 and 9 on the first frame, 7 joins on frame 2
    write_index_png(root / "masks" / "00000.png", np.where(mask == 2, 9, mask).astype(np.uint8))
    late = np.zeros_like(mask)
    late[50:70, 60:90] = 7
    write_index_png(root / "masks" / "00002.png", late)
    return root


def test_segment_through_the_server_equals_local(clip, golden_server, golden_export, tmp_path, capsys):
    common = ["--input", str(clip / "frames"), "--mask", str(clip / "mask.png"), "--no-progress", "--json"]
    assert segment.main(["--server", golden_server.url, "--out", str(tmp_path / "remote"), *common]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["backend"] == f"simvos-serve at {golden_server.url}"
    assert summary["frames"] == 4 and summary["objects"] == 2
    local = ["--engine-dir", str(golden_export), "--threads", "1", "--out", str(tmp_path / "local")]
    assert segment.main([*local, *common]) == 0
    names = sorted(p.name for p in (tmp_path / "local").glob("*.png"))
    assert names == sorted(p.name for p in (tmp_path / "remote").glob("*.png")) and len(names) == 4
    for name in names:
        remote, here = read_index_png(tmp_path / "remote" / name), read_index_png(tmp_path / "local" / name)
        np.testing.assert_array_equal(remote.labels, here.labels)
        np.testing.assert_array_equal(remote.palette, here.palette)
    assert set(np.unique(here.labels)) == {0, 1, 9}


def test_segment_through_two_servers_takes_the_same_masks_as_local(clip, golden_server, golden_export, tmp_path,
                                                                    capsys):
    """--masks DIR with an object joining on frame 2, through a client over two servers (one of them down)."""
    common = ["--input", str(clip / "frames"), "--masks", str(clip / "masks"), "--no-progress", "--json"]
    servers = f"127.0.0.1:9,{golden_server.url}"  # nothing listens on port 9: the video goes to the other
    assert segment.main(["--server", servers, "--out", str(tmp_path / "remote"), *common]) == 0
    assert json.loads(capsys.readouterr().out)["objects"] == 3
    local = ["--engine-dir", str(golden_export), "--threads", "1", "--out", str(tmp_path / "local")]
    assert segment.main([*local, *common]) == 0
    for name in [f"{i:05d}.png" for i in range(4)]:
        remote, here = read_index_png(tmp_path / "remote" / name), read_index_png(tmp_path / "local" / name)
        np.testing.assert_array_equal(remote.labels, here.labels, err_msg=name)
    assert set(np.unique(here.labels)) == {0, 1, 7, 9}


def test_segment_with_no_server_is_one_line_exit_2(clip, tmp_path, capsys):
    argv = ["--server", "127.0.0.1:9", "--input", str(clip / "frames"), "--mask", str(clip / "mask.png"),
            "--out", str(tmp_path / "o"), "--no-progress"]
    assert segment.main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("simvos-segment: error: server 127.0.0.1:9: cannot reach it")


def serve_cli(python: str, *argv: str) -> subprocess.CompletedProcess[str]:
    """simvos-serve in the serve environment (the server's Python, as the tests' servers)."""
    return subprocess.run([python, "-m", "simvos_trt.cli.serve", *argv], capture_output=True, text=True,
                          timeout=120)


def test_serve_without_export_is_one_line_exit_2(server_python, tmp_path):
    done = serve_cli(server_python, "--engine-dir", str(tmp_path / "nothing"), "--http-port", "0", "--grpc-port", "0",
                     "--metrics-port", "0")
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.count("\n") == 1 and done.stderr.startswith("simvos-serve: error: ")
    assert "simvos-export" in done.stderr


def test_serve_on_a_busy_port_is_one_line_exit_2(server_python, small_export):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        done = serve_cli(server_python, "--engine-dir", str(small_export), "--http-port", str(port))
    assert done.returncode == 2
    assert done.stderr == f"simvos-serve: error: --http-port {port}: cannot listen on 127.0.0.1:{port} (Address " \
        "already in use); choose another port\n"


def test_serve_help_explains_every_option(capsys):
    with pytest.raises(SystemExit) as exit_info:
        serve.main(["--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    for action in serve.build_parser()._actions:
        assert action.help and all(flag in text for flag in action.option_strings)
