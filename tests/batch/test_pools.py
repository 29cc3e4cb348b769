"""Many videos on worker processes of this machine (no Ray): the same PNGs and scores as the single-process run,
a worker killed in the middle of a video, resuming after an interrupt, errors in one line; and the scheduler's
decisions on scripted events (deaths at moments a real process cannot be made to die on cue)."""

from __future__ import annotations

import json
import multiprocessing
import shutil
import zipfile
from dataclasses import replace
from pathlib import Path

import pytest
from batch_helpers import SEQUENCES, KillOnce, outputs

from simvos_trt.batch import Processes, SegmenterSpec, davis_plan, segment_videos
from simvos_trt.batch.pools import Died, Done, Ready, gpu_slots, schedule, start_workers
from simvos_trt.batch.videos import VIDEO_RECORD, Opened, VideoResult
from simvos_trt.cli.eval import main
from simvos_trt.errors import BackendError, InputError

NAMES = [f"synthetic-{i:03d}" for i in range(SEQUENCES)]


def run(plan, spec: SegmenterSpec, out: Path, workers: int = 2, **kwargs):
    with Processes(spec, workers) as pool:
        return segment_videos(plan, pool, pool.start(plan.task), out, tool="test", **kwargs)


def test_two_processes_write_what_one_process_writes(davis, spec, reference, tmp_path):
    out = tmp_path / "out"
    runs = run(davis_plan(davis, "val"), spec, out)
    assert [r.name for r in runs] == NAMES and not any(r.skipped for r in runs)
    assert {r.worker.split(" (")[0] for r in runs} == {"process 1", "process 2"}
    assert outputs(out) == outputs(reference) and len(outputs(out)) == SEQUENCES * 6
    record = json.loads((out / NAMES[0] / VIDEO_RECORD).read_text())
    assert record["frames"] == 6 and record["files"] == [f"{t:05d}.png" for t in range(6)]
    assert (record["name"], record["skipped"], record["attempts"]) == (NAMES[0], False, 1)
    assert not multiprocessing.active_children()


def test_a_worker_killed_mid_video_is_replaced_and_its_video_redone(davis, spec, reference, tmp_path):
    plan = davis_plan(davis, "val")
    marks = tmp_path / "marks"
    marks.mkdir()
    runs = run(replace(plan, task=KillOnce(plan.task, NAMES[1], marks)), spec, tmp_path / "out")
    assert (marks / "killed").is_file()
    assert [r.attempts for r in runs] == [1, 2, 1, 1]
    assert outputs(tmp_path / "out") == outputs(reference)
    assert not list((tmp_path / "out").glob(".*partial*")), "no half-written video is left"


def test_a_video_that_kills_every_worker_fails_the_run_and_keeps_the_others(davis, spec, reference, tmp_path):
    plan = davis_plan(davis, "val")
    marks = tmp_path / "marks"
    marks.mkdir()
    task = KillOnce(plan.task, NAMES[-1], marks, always=True)
    with pytest.raises(BackendError, match=rf"video {NAMES[-1]}: its worker died 3 times \(last: worker process "
                                           r"\d+: killed by signal 9\).*run the same command to resume"):
        run(replace(plan, task=task), spec, tmp_path / "out", workers=1)
    assert not (tmp_path / "out" / NAMES[-1]).exists()
    runs = run(plan, spec, tmp_path / "out", workers=1)  # the same command, without the killer: resumes
    assert [r.skipped for r in runs] == [True, True, True, False]
    assert outputs(tmp_path / "out") == outputs(reference)


def test_an_interrupted_run_resumes_and_skips_finished_videos(davis, spec, reference, tmp_path):
    plan, out = davis_plan(davis, "val"), tmp_path / "out"

    def stop_after_two(index, total, run_):
        if index == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run(plan, spec, out, progress=stop_after_two)
    assert not multiprocessing.active_children(), "the workers are stopped"
    finished = sorted(p.parent.name for p in out.glob(f"*/{VIDEO_RECORD}"))
    assert len(finished) == 2
    runs = run(plan, spec, out)
    assert sorted(r.name for r in runs if r.skipped) == finished
    assert outputs(out) == outputs(reference)


def test_a_task_error_stops_the_run_with_its_message(davis, spec, tmp_path):
    shutil.copytree(davis, tmp_path / "davis")
    plan = davis_plan(tmp_path / "davis", "val")  # checked; then a frame is damaged
    (tmp_path / "davis" / "JPEGImages" / "480p" / NAMES[2] / "00003.jpg").write_bytes(b"not a jpeg")
    with pytest.raises(InputError, match=rf"sequence '{NAMES[2]}', frame 00003: .*00003.jpg"):
        run(plan, spec, tmp_path / "out")
    assert not multiprocessing.active_children()


def test_workers_that_cannot_open_the_export(davis, export, tmp_path):
    spec = SegmenterSpec(export, "tensorrt")
    with pytest.raises(BackendError, match=r"^process \d \(pid \d+\) could not open the export: .*(TensorRT|tensorrt)"):
        run(davis_plan(davis, "val"), spec, tmp_path / "out")


def test_simvos_eval_with_workers_equals_the_single_process_run(davis, export, reference, tmp_path, capsys):
    out = tmp_path / "out"
    argv = ["--davis-root", str(davis), "--engine-dir", str(export), "--backend", "onnxruntime", "--out", str(out),
            "--json"]
    assert main([*argv, "--workers", "2"]) == 0
    captured = capsys.readouterr()
    summary = json.loads(captured.out)
    assert outputs(out) == outputs(reference)
    assert {s["worker"].split(" (")[0] for s in summary["sequences"]} == {"process 1", "process 2"}
    assert summary["videos_per_minute"] > 0
    for i, name in enumerate(NAMES):  # progress from every worker, in the order the videos finished
        assert f"] {name}: 6 frames, " in captured.err
        assert f"[{i + 1}/{SEQUENCES}] " in captured.err
    assert main([*argv, "--out", str(tmp_path / "one")]) == 0  # one process: the same table
    one = json.loads(capsys.readouterr().out)
    assert one["global"] == summary["global"] and one["per_sequence"] == summary["per_sequence"]
    assert main(argv) == 0  # one process resumes the workers' folder: all finished
    assert capsys.readouterr().err.count("skipped, all 6 PNGs present") == SEQUENCES
    assert main([*argv, "--out", str(tmp_path / "one"), "--workers", "2"]) == 0  # and the other way round
    assert capsys.readouterr().err.count("skipped, all 6 PNGs present") == SEQUENCES


def test_option_errors(davis, export, capsys):
    base = ["--davis-root", str(davis), "--engine-dir", str(export)]
    for extra, message in ((["--workers", "0"], "--workers: got 0, expected at least 1"),
                           (["--ship-export"], "--ship-export needs --ray")):
        with pytest.raises(SystemExit):
            main([*base, *extra])
        assert message in capsys.readouterr().err



def test_each_process_gets_a_gpu_round_robin(monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3,5")
    assert gpu_slots(3) == ["3", "5", "3"]
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")  # no GPU visible
    assert gpu_slots(2) == [None, None]


class ScriptedWorkers:
    """The scheduler's view of workers, driven by a script: each ``wait`` answers the next list of events, built
    from what was submitted so far (the decisions of ``schedule`` tested without processes)."""

    def __init__(self, count: int, script) -> None:
        self.count, self.script = count, iter(script)
        self.submitted: list[tuple[int, str]] = []
        self.launched: list[int] = []

    def launch(self, worker: int) -> None:
        self.launched.append(worker)

    def submit(self, worker: int, name: str) -> None:
        self.submitted.append((worker, name))

    def wait(self):
        return next(self.script)(self)


def done(worker: int):
    def answer(ws: ScriptedWorkers):
        name = next(n for w, n in reversed(ws.submitted) if w == worker)
        return [Done(worker, VideoResult(name, 1, {}, 0.1, f"w{worker}"))]
    return answer


def test_schedule_hands_a_dead_workers_video_to_the_next_idle_one():
    script = [lambda ws: [Died(1, "killed")],  # worker 1 dies with video b
              done(0), lambda ws: [Ready(1, Opened("f", "onnxruntime"))], done(0), done(1)]
    workers = ScriptedWorkers(2, script)
    results = list(schedule(workers, ["a", "b", "c"]))
    assert workers.submitted == [(0, "a"), (1, "b"), (0, "b"), (1, "c")] and workers.launched == [1]
    assert [(r.name, r.attempts) for r in results] == [("a", 1), ("b", 2), ("c", 1)]


def test_schedule_relaunches_a_worker_that_died_between_videos():
    workers = ScriptedWorkers(2, [lambda ws: [Died(1, "killed")], done(0)])  # worker 1 had nothing to do
    assert [r.name for r in schedule(workers, ["a"])] == ["a"] and workers.launched == [1]


def test_schedule_stops_when_a_worker_cannot_start_anew():
    script = [lambda ws: [Died(0, "killed")], lambda ws: [Died(0, "process 1 could not open the export: gone")]]
    with pytest.raises(BackendError, match="could not open the export: gone"):
        list(schedule(ScriptedWorkers(1, script), ["a"]))


def test_workers_that_opened_different_backends_stop_the_start():
    """A node without TensorRT resolves ``auto`` to ONNX Runtime: the inputs differ, not a backend failing."""
    script = [lambda ws: [Ready(0, Opened("f", "tensorrt")), Ready(1, Opened("f", "onnxruntime"))]]
    with pytest.raises(InputError, match="the workers opened different exports or backends .*pass --backend"):
        start_workers(ScriptedWorkers(2, script))


def test_youtube_vos_on_workers_equals_the_single_process_run(youtube, export, tmp_path, capsys):
    """Objects that join at later frames, the listed frames saved, the server's zip: as in one process."""
    argv = ["--youtube-root", str(youtube), "--engine-dir", str(export), "--backend", "onnxruntime", "--threads", "1",
            "--json", "--no-progress"]
    for name, extra in (("one", []), ("two", ["--workers", "2"])):
        assert main([*argv, "--out", str(tmp_path / name), "--zip", str(tmp_path / f"{name}.zip"), *extra]) == 0
        summary = json.loads(capsys.readouterr().out)
        assert summary["zip"]["pngs"] > 0
    pngs = {p.relative_to(tmp_path / "one"): p.read_bytes() for p in (tmp_path / "one").glob("Annotations/*/*.png")}
    assert pngs and pngs == {p.relative_to(tmp_path / "two"): p.read_bytes()
                             for p in (tmp_path / "two").glob("Annotations/*/*.png")}
    zips = [zipfile.ZipFile(tmp_path / f"{name}.zip") for name in ("one", "two")]
    assert [(i.filename, zips[0].read(i)) for i in zips[0].infolist()] == \
        [(i.filename, zips[1].read(i)) for i in zips[1].infolist()]
    assert {s["worker"].split(" (")[0] for s in summary["sequences"]} == {"process 1", "process 2"}
