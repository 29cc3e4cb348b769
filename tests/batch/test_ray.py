"""Many videos on a Ray cluster. Ray must not listen on this machine's outward address, so its part runs in a
network namespace that holds only loopback (``unshare -n``, as root): ``ray_driver.py``, once for the module,
on a 2-node local cluster. Here: its outputs against the single-process run, and the errors Ray is not needed for.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from batch_helpers import SEQUENCES, outputs

import simvos_trt
from simvos_trt.cli.eval import main

HERE = Path(__file__).parent
#: A sitecustomize that hides simvos_trt from a Python started with this folder on its PYTHONPATH.
HIDE_PACKAGE = '''import sys
class _Hide:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] == "simvos_trt":
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
sys.meta_path.insert(0, _Hide())
'''


def namespace_problem() -> str | None:
    """Why a loopback-only network namespace cannot be made here (None if it can)."""
    if shutil.which("unshare") is None or shutil.which("ip") is None:
        return "needs unshare and ip (util-linux, iproute2)"
    probe = subprocess.run(["unshare", "-n", "sh", "-c", "ip link set lo up"], capture_output=True, text=True)
    return None if probe.returncode == 0 else f"unshare -n is not permitted here ({probe.stderr.strip()}; root needed)"


@pytest.fixture(scope="module")
def driven(davis, export, tmp_path_factory) -> dict:
    """Run ray_driver.py in a loopback-only namespace; what it reports (result.json) and its work folder."""
    pytest.importorskip("ray", reason="the Ray tests need the 'ray' extra")
    problem = namespace_problem()
    if problem:
        pytest.skip(f"Ray runs only inside a network namespace with loopback alone: {problem}")
    work = tmp_path_factory.mktemp("ray")
    blocker = work / "blocker"
    blocker.mkdir()
    (blocker / "sitecustomize.py").write_text(HIDE_PACKAGE)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(simvos_trt.__file__).parents[1]), str(HERE)]),
           "RAY_USAGE_STATS_ENABLED": "0"}
    proc = subprocess.run(["unshare", "-n", "sh", "-c", 'ip link set lo up && exec "$0" "$@"', sys.executable,
                           str(HERE / "ray_driver.py"), str(export), str(davis), str(work), str(blocker)],
                          env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads((work / "result.json").read_text())
    print(json.dumps({k: round(v, 1) for k, v in result.items() if k.endswith("_s")}))  # CI time, with -s
    return {**result, "work": work}


def test_simvos_eval_on_a_two_node_cluster_equals_the_single_process_run(driven, davis, reference, capsys):
    cli = driven["cli"]
    assert cli["code"] == 0, cli["stderr"]
    summary = json.loads(cli["stdout"])
    assert outputs(driven["work"] / "cli") == outputs(reference)
    assert main(["--davis-root", str(davis), "--results", str(reference), "--json",
                 "--out", str(driven["work"] / "reference-scores")]) == 0
    single = json.loads(capsys.readouterr().out)
    assert summary["global"] == single["global"] and summary["per_sequence"] == single["per_sequence"]
    workers = {s["worker"].split(" (")[0] for s in summary["sequences"]}
    assert workers == {"worker 1", "worker 2"}, "both actors took videos"
    for i in range(1, SEQUENCES + 1):
        assert f"[{i}/{SEQUENCES}] synthetic-" in cli["stderr"]


def test_a_worker_killed_mid_video_is_replaced_and_every_video_completes(driven, reference):
    assert (driven["work"] / "marks" / "killed").is_file(), "a worker was SIGKILLed"
    assert [r["attempts"] for r in driven["killed"]] == [1, 2, 1, 1]
    assert outputs(driven["work"] / "killed") == outputs(reference)
    assert len(driven["nodes"]) == 2, "the actors ran on both nodes"


def test_an_interrupted_run_resumes(driven, reference):
    assert len(driven["interrupted"]) == 2
    assert sorted(r["name"] for r in driven["resumed"] if r["skipped"]) == driven["interrupted"]
    assert outputs(driven["work"] / "resumed") == outputs(reference)


def test_workers_that_cannot_import_the_package_give_one_line(driven):
    run = driven["no_package"]
    assert run["code"] == 2
    lines = [line for line in run["stderr"].splitlines() if line.startswith("simvos-eval: error")]
    assert lines == ["simvos-eval: error: a Ray worker cannot import the package (ModuleNotFoundError: No module "
                     "named 'simvos_trt'); install simvos-trt, the same version, on every node of the cluster "
                     "(pip install 'simvos-trt[ray]') or start the cluster from this environment"]


def test_ray_without_an_address_starts_a_cluster_for_the_run(driven, reference):
    local = driven["local"]
    assert local["code"] == 0, local["stderr"]
    assert json.loads(local["stdout"])["backend"] == "onnxruntime"
    assert outputs(driven["work"] / "local") == outputs(reference)


def test_every_ray_process_is_gone(driven):
    assert driven["left_running"] == []


def test_an_unreachable_address_gives_one_line(davis, export, capsys):
    pytest.importorskip("ray", reason="the Ray tests need the 'ray' extra")
    code = main(["--davis-root", str(davis), "--engine-dir", str(export), "--ray", "127.0.0.1:9", "--no-progress"])
    assert code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("simvos-eval: error: --ray 127.0.0.1:9: no Ray cluster answers there (Connection refused)")
    assert "\n" not in err


def test_without_ray_installed_only_ray_asks_for_the_extra(davis, export, reference, tmp_path, capsys,
                                                            monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # as if not installed: importing it raises ImportError
    for name in [m for m in sys.modules if m.startswith("simvos_trt.batch")]:
        monkeypatch.delitem(sys.modules, name)  # imported anew, without Ray
    argv = ["--davis-root", str(davis), "--engine-dir", str(export), "--backend", "onnxruntime", "--no-progress"]
    assert main([*argv, "--ray"]) == 2
    assert capsys.readouterr().err == ("simvos-eval: error: --ray needs the Python package 'ray', which is not "
                                       "installed; install it with: pip install 'simvos-trt[ray]'\n")
    assert main([*argv, "--out", str(tmp_path / "out")]) == 0
    assert outputs(tmp_path / "out") == outputs(reference)
