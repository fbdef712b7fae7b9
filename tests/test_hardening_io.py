"""Hardening of the weekly job's writes (issue #15, items 6 and 9): a partition is replaced in
one atomic step, temporary folders of killed runs are cleaned at the next run, the output
folder is checked before the work, and what is written honours the umask."""

from __future__ import annotations

import errno
import os
import stat
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest

from features import io
from features.io import OutputError, atomic_dir, atomic_file, check_writable

ROOT = Path(__file__).resolve().parents[1]


def _write(folder: Path, text: str) -> None:
    (folder / "run.json").write_text(text)
    (folder / "scores.parquet").write_text(text * 10)


def _run_killed(script: str) -> None:
    """Run `script` in a child process that dies with SIGKILL-like abruptness (os._exit)."""
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script)], cwd=ROOT, capture_output=True, text=True
    )
    assert result.returncode == 9, result.stderr


def test_a_rerun_replaces_the_folder_and_a_reader_never_sees_it_missing_or_mixed(tmp_path):
    target = tmp_path / "as_of=2024-12-01"
    with atomic_dir(target) as tmp:
        _write(tmp, "0")
    seen: list[str] = []
    stop = threading.Event()

    def read() -> None:
        while not stop.is_set():
            try:
                run = (target / "run.json").read_text()
            except FileNotFoundError:
                seen.append("missing")
                continue
            seen.append(run)

    reader = threading.Thread(target=read)
    reader.start()
    try:
        for i in range(1, 60):
            with atomic_dir(target) as tmp:
                _write(tmp, str(i))
    finally:
        stop.set()
        reader.join()
    assert "missing" not in seen
    assert (target / "run.json").read_text() == "59"
    assert (target / "scores.parquet").read_text() == "59" * 10
    assert [p.name for p in tmp_path.iterdir()] == [target.name]  # nothing left beside it


def test_a_failed_write_leaves_the_previous_folder_whole(tmp_path):
    target = tmp_path / "as_of=2024-12-01"
    with atomic_dir(target) as tmp:
        _write(tmp, "old")
    with pytest.raises(RuntimeError), atomic_dir(target) as tmp:
        _write(tmp, "new")
        raise RuntimeError("the scoring failed")
    assert (target / "run.json").read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == [target.name]


def test_the_temporary_folder_of_a_killed_run_is_removed_by_the_next_run(tmp_path):
    target = tmp_path / "as_of=2024-12-01"
    _run_killed(f"""
        import os
        from features.io import atomic_dir
        with atomic_dir({str(target)!r}) as tmp:
            (tmp / "scores.parquet").write_bytes(b"x" * 100_000)
            os._exit(9)
    """)
    left = [p for p in tmp_path.iterdir() if p.name != target.name]
    assert len(left) == 1 and left[0].name.startswith(".as_of=2024-12-01.tmp-")
    with atomic_dir(tmp_path / "as_of=2024-12-08") as tmp:
        _write(tmp, "next week")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["as_of=2024-12-08"]


def test_a_temporary_folder_of_a_live_run_is_left_alone(tmp_path):
    target = tmp_path / "as_of=2024-12-01"
    with atomic_dir(target) as tmp:
        other = atomic_dir(tmp_path / "as_of=2024-12-08")
        other_tmp = other.__enter__()  # this process: alive
        io.clean_dead_temporaries(tmp_path)
        assert other_tmp.is_dir() and tmp.is_dir()
        other.__exit__(None, None, None)


def test_without_an_atomic_exchange_a_run_killed_between_its_renames_loses_nothing(tmp_path):
    target = tmp_path / "as_of=2024-12-01"
    with atomic_dir(target) as tmp:
        _write(tmp, "old")
    _run_killed(f"""
        import os
        from features import io
        io._exchange = lambda a, b: False  # a filesystem without RENAME_EXCHANGE
        real = os.replace
        def replace_then_die(a, b):
            real(a, b)
            os._exit(9)  # killed between setting the old folder aside and moving the new in
        with io.atomic_dir({str(target)!r}) as tmp:
            (tmp / "run.json").write_text("new")
            os.replace = replace_then_die
    """)
    assert not target.exists()
    io.clean_dead_temporaries(tmp_path)  # what the next run does first
    assert (target / "run.json").read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == [target.name]


def test_the_fallback_without_an_exchange_still_replaces_the_folder(tmp_path, monkeypatch):
    monkeypatch.setattr(io, "_exchange", lambda a, b: False)
    target = tmp_path / "out"
    for text in ("a", "b"):
        with atomic_dir(target) as tmp:
            _write(tmp, text)
    assert (target / "run.json").read_text() == "b"
    assert [p.name for p in tmp_path.iterdir()] == ["out"]


@pytest.mark.parametrize("mask", [0o022, 0o027])
def test_folders_and_files_honour_the_umask(tmp_path, mask):
    old = os.umask(mask)
    try:
        with atomic_dir(tmp_path / "part") as tmp:
            (tmp / "scores.parquet").write_text("x")
        with atomic_file(tmp_path / "scores.csv") as tmp:
            tmp.write_text("x")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "part").stat().st_mode) == 0o777 & ~mask
    assert stat.S_IMODE((tmp_path / "part" / "scores.parquet").stat().st_mode) == 0o666 & ~mask
    assert stat.S_IMODE((tmp_path / "scores.csv").stat().st_mode) == 0o666 & ~mask


def test_a_file_given_as_the_output_folder_is_refused_by_name(tmp_path):
    out = tmp_path / "scores"
    out.write_text("not a folder")
    with pytest.raises(OutputError, match=r"scores is a file, not a folder"):
        check_writable(out)
    with pytest.raises(OutputError, match=r"cannot be created: .*scores is a file"):
        check_writable(out / "weekly")
    with pytest.raises(OutputError, match="exists and is not a folder"), atomic_dir(out):
        pass
    with pytest.raises(OutputError, match="is a folder"), atomic_file(tmp_path):
        pass


def test_a_read_only_output_folder_is_refused_before_the_work(tmp_path, monkeypatch):
    def read_only(*args, **kwargs):
        raise OSError(errno.EROFS, os.strerror(errno.EROFS))

    monkeypatch.setattr(io.tempfile, "mkstemp", read_only)
    with pytest.raises(OutputError, match=r"cannot write in the output folder .*: Read-only"):
        check_writable(tmp_path / "scores")


def test_too_little_free_space_is_refused_with_the_figures(tmp_path, monkeypatch):
    monkeypatch.setattr(io.shutil, "disk_usage", lambda _: _Usage)
    with pytest.raises(OutputError, match=r"has 1.0 MiB free; the run needs about 64.0 MiB"):
        check_writable(tmp_path / "scores", need_bytes=64 * 1024**2)
    assert check_writable(tmp_path / "scores", need_bytes=1024) == tmp_path / "scores"
    assert not (tmp_path / "scores").exists()  # checked, not created


class _Usage:  # shutil.disk_usage's shape, 1 MiB free
    total, used, free = 10 * 1024**2, 9 * 1024**2, 1024**2
