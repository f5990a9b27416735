"""What a process killed with -9 leaves behind is cleared by the next run of the same kind (issue 14, item 8).

kill -9 skips every `finally`, so edgecifar names its temporary files and folders with the process id:
SavedModel scratch folders in the system temp dir, hidden atomic-write files beside an artifact,
`.partial` videos. The next writer removes those of dead processes and leaves a live process' alone.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile

import numpy as np

from edgecifar.files import HOST, SCRATCH_PATTERN, atomic_path, pid_alive, scratch_dir, sweep_dead


def dead_pid() -> int:
    """The id of a process that has just exited (and been reaped)."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    assert not pid_alive(proc.pid)
    return proc.pid


def test_sweep_removes_only_dead_processes_entries(tmp_path):
    dead, live = dead_pid(), os.getppid()
    other_host = "0badf00d" if HOST != "0badf00d" else "0badf00e"
    (tmp_path / f"edgecifar-export-{HOST}-{dead}-abc").mkdir()
    (tmp_path / f"edgecifar-export-{HOST}-{dead}-abc" / "saved_model.pb").write_bytes(b"x" * 1000)
    keep = [f"edgecifar-export-{HOST}-{live}-def",          # a live process
            f"edgecifar-export-{HOST}-{os.getpid()}-ghi",   # this very process: in use
            f"edgecifar-export-{other_host}-{dead}-jkl",    # another machine's (shared folder): its pids mean nothing here
            f"edgecifar-export-{HOST}-99999999999999999999-x",  # a pid no kernel has: left alone, no crash
            "something-else-123-x"]
    for name in keep:
        (tmp_path / name).mkdir()
    removed = sweep_dead(tmp_path, SCRATCH_PATTERN)
    assert [p.name for p in removed] == [f"edgecifar-export-{HOST}-{dead}-abc"]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(keep)


def test_scratch_dir_is_named_by_pid_and_removed(monkeypatch, tmp_path):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    stale = tmp_path / f"edgecifar-onnx-{HOST}-{dead_pid()}-zz"
    stale.mkdir()
    with scratch_dir("export") as d:
        assert d.parent == tmp_path and d.name.startswith(f"edgecifar-export-{HOST}-{os.getpid()}-") and d.is_dir()
        assert not stale.exists(), "a killed export's scratch folder is cleared when the next one starts"
    assert not d.exists()


def test_atomic_write_clears_a_killed_writers_temp_file(tmp_path):
    target = tmp_path / "model_int8.tflite"
    killed = tmp_path / f".model_int8.tflite.{HOST}-{dead_pid()}.k2j4h8x1.tflite.tmp"
    killed.write_bytes(b"half")
    other = tmp_path / f".other.tflite.{HOST}-{dead_pid()}.aaaaaaaa.tflite.tmp"  # another file's: not this writer's business
    other.write_bytes(b"half")
    with atomic_path(target) as tmp:
        assert f".{HOST}-{os.getpid()}." in tmp.name
        tmp.write_bytes(b"complete")
    assert target.read_bytes() == b"complete"
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([target.name, other.name])


def test_kill_9_during_a_write_then_the_next_write_cleans_up(tmp_path):
    """A real kill -9 in the middle of atomic_path: the old file survives, the next write removes the leftover."""
    target = tmp_path / "report.json"
    target.write_text("old, good")
    code = (f"import time\nfrom edgecifar.files import atomic_path\n"
            f"with atomic_path({str(target)!r}) as tmp:\n    tmp.write_text('half')\n    print('writing', flush=True)\n"
            f"    time.sleep(60)\n")
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "writing"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    leftovers = [p for p in tmp_path.iterdir() if p.name != "report.json"]
    assert len(leftovers) == 1 and f"-{proc.pid}." in leftovers[0].name  # what kill -9 leaves
    assert target.read_text() == "old, good"  # never lost
    with atomic_path(target) as tmp:
        tmp.write_text("new")
    assert [p.name for p in tmp_path.iterdir()] == ["report.json"] and target.read_text() == "new"


def test_video_sink_clears_a_killed_runs_partial_file(tmp_path):
    from edgecifar.device.frame_loop import VideoSink

    stale = tmp_path / f".out.{HOST}-{dead_pid()}.partial.mp4"
    stale.write_bytes(b"unplayable")
    sink = VideoSink(tmp_path / "out.mp4", 15.0)
    assert not stale.exists()
    for _ in range(5):
        sink.write(np.zeros((48, 64, 3), np.uint8))
    assert sink.finish(True) == tmp_path / "out.mp4"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.mp4"]
