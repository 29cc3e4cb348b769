"""The Ray part of test_ray.py, run by it inside a network namespace that holds only loopback (Ray then binds
127.0.0.1 alone): a 2-node local cluster, and on it simvos-eval with the export shipped through the object store,
a worker SIGKILLed in the middle of a video, an interrupted run resumed, and workers that cannot import the
package; then --ray alone, on a cluster it starts. Writes what happened as JSON to ``<work>/result.json``; the
test compares the outputs.

Usage: python ray_driver.py EXPORT DAVIS_ROOT WORK BLOCKER_DIR
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import psutil
import ray
from batch_helpers import KillOnce
from ray.cluster_utils import Cluster

from simvos_trt.batch import SegmenterSpec, davis_plan, segment_videos
from simvos_trt.batch.cluster import RayPool
from simvos_trt.cli.eval import main as simvos_eval


def cli(argv: list[str]) -> dict:
    """Run simvos-eval in this process: exit code, stdout and stderr (as Python writes them)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = simvos_eval(argv)
    return {"code": code, "stdout": out.getvalue(), "stderr": err.getvalue()}


def library_run(address: str, spec: SegmenterSpec, plan, out: Path, **kwargs) -> list[dict]:
    ray.init(address=address, logging_level="WARNING", log_to_driver=False)
    try:
        with RayPool(spec, count=2) as pool:
            runs = segment_videos(plan, pool, pool.start(plan.task), out, tool="simvos-eval", **kwargs)
    finally:
        ray.shutdown()
    return [{"name": r.name, "skipped": r.skipped, "attempts": r.attempts, "worker": r.worker} for r in runs]


def main() -> None:
    export, davis, work, blocker = map(Path, sys.argv[1:5])
    result: dict = {}
    t0 = time.perf_counter()
    logs = os.environ["RAY_TMPDIR"] = tempfile.mkdtemp(prefix="ray-", dir="/tmp")  # Ray's files (a short path:
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})  # sockets)
    cluster.add_node(num_cpus=1)
    result["cluster_start_s"] = time.perf_counter() - t0
    try:
        eval_args = ["--davis-root", str(davis), "--engine-dir", str(export), "--backend", "onnxruntime",
                     "--threads", "1", "--json", "--ray", cluster.address]
        t = time.perf_counter()
        result["cli"] = cli([*eval_args, "--out", str(work / "cli"), "--ship-export"])
        result["cli_s"] = time.perf_counter() - t

        spec, plan = SegmenterSpec(export, "onnxruntime", threads=1), davis_plan(davis, "val")
        marks = work / "marks"
        marks.mkdir()
        t = time.perf_counter()
        task = KillOnce(plan.task, plan.names[1], marks)
        result["killed"] = library_run(cluster.address, spec, replace(plan, task=task), work / "killed")
        result["killed_s"] = time.perf_counter() - t
        result["nodes"] = sorted({p.read_text() for p in marks.glob("synthetic-*")})

        def stop_after_two(index: int, total: int, run: object) -> None:
            if index == 2:
                raise KeyboardInterrupt

        t = time.perf_counter()
        try:
            library_run(cluster.address, spec, plan, work / "resumed", progress=stop_after_two)
        except KeyboardInterrupt:
            result["interrupted"] = sorted(p.parent.name for p in (work / "resumed").glob("*/.simvos-video.json"))
        result["resumed"] = library_run(cluster.address, spec, plan, work / "resumed")
        result["resume_s"] = time.perf_counter() - t

        t = time.perf_counter()  # workers that cannot import simvos_trt: their PYTHONPATH hides it
        ray.init(address=cluster.address, logging_level="WARNING", log_to_driver=False,
                 runtime_env={"env_vars": {"PYTHONPATH": str(blocker)}})
        try:
            result["no_package"] = cli([*eval_args, "--out", str(work / "no_package")])
        finally:
            ray.shutdown()
        result["no_package_s"] = time.perf_counter() - t
    finally:
        ray.shutdown()
        cluster.shutdown()
    t = time.perf_counter()  # --ray alone: a cluster started for the run, and stopped after it
    result["local"] = cli(["--davis-root", str(davis), "--engine-dir", str(export), "--backend", "onnxruntime",
                           "--json", "--ray", "--out", str(work / "local")])
    result["local_s"] = time.perf_counter() - t
    shutil.rmtree(logs, ignore_errors=True)
    time.sleep(1)
    result["left_running"] = [p.name() for p in psutil.Process().children(recursive=True) if p.is_running()]
    result["total_s"] = time.perf_counter() - t0
    (work / "result.json").write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
