"""The runtime imports and segments with ONNX Runtime where torch cannot be imported."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import numpy as np
from videos import SMALL, moving_video

from simvos_trt.runtime import VideoSegmenter

SCRIPT = textwrap.dedent("""
    import json, sys
    sys.modules["torch"] = None  # any "import torch" now raises ImportError
    sys.modules["timm"] = None
    import numpy as np
    from simvos_trt.errors import MissingDependencyError
    from simvos_trt.runtime import VideoSegmenter

    folder, data = sys.argv[1], np.load(sys.argv[2])
    with VideoSegmenter.open(folder, "auto", threads=1) as seg:
        labels = [lab.tolist() for lab in seg.segment(data["frames"], data["mask"])]
        backend = seg.backend.name
    try:
        VideoSegmenter.open(folder, "torch")
        torch_error = None
    except MissingDependencyError as exc:
        torch_error = str(exc)
    loaded = sorted(m for m, mod in sys.modules.items() if mod is not None and m.split(".")[0] in ("torch", "timm"))
    print(json.dumps({"labels": labels, "backend": backend, "torch_error": torch_error, "loaded": loaded}))
""")


def test_runtime_without_torch(small_export, tmp_path):
    frames, mask = moving_video(4, *SMALL, objects=2)
    np.savez(tmp_path / "video.npz", frames=frames, mask=mask)
    proc = subprocess.run([sys.executable, "-c", SCRIPT, str(small_export.folder), str(tmp_path / "video.npz")],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["backend"] == "onnxruntime" and out["loaded"] == []
    assert "pip install 'simvos-trt[torch]'" in out["torch_error"]
    labels = np.array(out["labels"], np.uint8)
    assert labels.shape == (4, *SMALL)
    with VideoSegmenter.open(small_export.folder, "onnxruntime", threads=1) as seg:
        np.testing.assert_array_equal(labels, np.stack(list(seg.segment(frames, mask))))
