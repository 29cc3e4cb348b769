"""The Python side of the C++ tests: the golden export, a real simvos-serve, the Python client's outputs.

    SIMVOS_SERVE_PYTHON=.venv-serve/bin/python .venv/bin/python cpp/tests/serve_fixture.py WORKDIR

Writes under WORKDIR (kept between runs: the export takes a while): ``export/`` (the golden checkpoint, T
configuration, 128x192, at most 4 objects, as tests/serve/conftest.py's golden_export), ``golden/`` (the golden
video tiny_L4_tr as PNG frames, JPEG frames and an FFV1 video, its mask with ids {1, 9} and a 10-entry palette,
also as late/00002.png and as later/00000.png + later/00003.png), ``pillow/`` (label maps as raw bytes beside
the PNGs the Python tool writes of them), then starts a server on free ports, writes the Python client's masks
(``python-<kind>/`` of each of ``RUNS``: ``simvos-segment --server``), starts a spare server for the failover
test and prints ``ready GRPC_URL HTTP_PORT SPARE_GRPC_URL``. A line ``kill spare`` on its stdin SIGKILLs the spare
server (and every process it started), answered by ``killed``. Stops the servers and exits when its stdin closes
(the C++ test ends).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]  # this checkout's simvos_trt and tests/goldens.py
os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))  # the server's

import cv2  # noqa: E402
import numpy as np  # noqa: E402
from goldens import load_golden  # noqa: E402
from PIL import Image  # noqa: E402

from simvos_trt.runtime.png import encode_index_png  # noqa: E402

GOLDEN_CASE, SIZE, MAX_OBJECTS = "tiny_L4_tr", (128, 192), 4
#: The Python client's runs, each into python-<kind>/: the frames and the mask options, under golden/.
RUNS = {"png": ("png", "--mask", "mask.png"), "jpg": ("jpg", "--mask", "mask.png"),
        "video": ("video.avi", "--mask", "mask.png"), "late": ("png", "--masks", "late"),
        "later": ("png", "--masks", "later")}


def make_export(folder: Path) -> Path:
    """The golden export in ``folder``: the one kept from an earlier run if this checkout still reads it."""
    import shutil

    from simvos_trt.manifest import ManifestError, read_manifest

    try:
        read_manifest(folder)
        return folder
    except ManifestError:
        shutil.rmtree(folder, ignore_errors=True)
    import torch

    from simvos_trt.config import preset
    from simvos_trt.export.onnx_export import ExportSettings, export_folder
    from simvos_trt.manifest import Weights
    from simvos_trt.model import load_official_checkpoint, synthetic_state_dict

    checkpoint = folder.parent / "tiny_official_layout.pth"
    torch.save(synthetic_state_dict(preset("T"), seed=1), checkpoint)
    model = load_official_checkpoint(checkpoint, load_golden(GOLDEN_CASE).config())
    export_folder(model, folder, ExportSettings(*SIZE, max_objects=MAX_OBJECTS), checkpoint=Weights("official"))
    return folder


def make_video(folder: Path) -> None:
    case = load_golden(GOLDEN_CASE)
    for kind in ("png", "jpg"):
        (folder / kind).mkdir(parents=True, exist_ok=True)
        for i, frame in enumerate(case.frames):
            cv2.imwrite(str(folder / kind / f"{i:05d}.{kind}"), frame[:, :, ::-1])
    video = cv2.VideoWriter(str(folder / "video.avi"), cv2.VideoWriter.fourcc(*"FFV1"), 10, case.frames.shape[2:0:-1])
    for frame in case.frames:  # FFV1: lossless, so both sides decode the same frames
        video.write(np.ascontiguousarray(frame[:, :, ::-1]))
    video.release()
    mask = np.where(case.first_mask == 2, 9, case.first_mask).astype(np.uint8)
    image = Image.frombytes("P", mask.shape[::-1], mask.tobytes())
    image.putpalette([0, 0, 0, 250, 10, 10] + [20, 20, 20] * 7 + [10, 250, 10])  # 10 entries, not DAVIS's 256
    image.save(folder / "mask.png")
    for masks, frames in {"late": ("00002",), "later": ("00000", "00003")}.items():
        (folder / masks).mkdir(exist_ok=True)
        for name in frames:  # late: the objects appear on the third frame; later: a second mask on the fourth
            image.save(folder / masks / f"{name}.png")


def make_pillow_pairs(folder: Path) -> None:
    """Label maps (``NAME.HxW.raw``) and the Python tool's PNG of each (``NAME.png``): blocks, noise at 1080p,
    and a width over 16384."""
    folder.mkdir(exist_ok=True)
    rng = np.random.default_rng(3)
    blocks = np.zeros((480, 854), np.uint8)
    blocks[100:300, 200:500], blocks[250:, 600:] = 1, 9
    for name, labels in {"blocks": blocks, "noise": rng.integers(0, 4, (1080, 1920), dtype=np.uint8),
                         "wide": rng.integers(0, 3, (40, 20000), dtype=np.uint8)}.items():
        (folder / f"{name}.{labels.shape[0]}x{labels.shape[1]}.raw").write_bytes(labels.tobytes())
        (folder / f"{name}.png").write_bytes(encode_index_png(labels))


def main(workdir: Path) -> None:
    from simvos_trt.cli import segment
    from simvos_trt.serve import ServerProcess

    workdir.mkdir(parents=True, exist_ok=True)
    export = make_export(workdir / "export")
    make_video(workdir / "golden")
    make_pillow_pairs(workdir / "pillow")
    with ServerProcess(export, "--threads", "1", "--instances", "2", log=workdir / "server.log") as server, \
            ServerProcess(export, "--threads", "1", log=workdir / "spare.log") as spare:
        for kind, (frames, option, masks) in RUNS.items():
            golden = workdir / "golden"
            argv = ["--server", server.url, "--input", str(golden / frames), option, str(golden / masks), "--out",
                    str(workdir / f"python-{kind}"), "--force", "--no-progress"]
            if segment.main(argv) != 0:
                raise SystemExit(f"simvos-segment --server failed on golden/{frames} with {option} {masks}")
        print(f"ready {server.url} {server.http_port} {spare.url}", flush=True)
        for line in sys.stdin:  # until the C++ test closes the pipe (or dies)
            if line.strip() == "kill spare":  # as its machine failing: the failover test
                spare.kill()
                print("killed", flush=True)


if __name__ == "__main__":
    main(Path(sys.argv[1]))
