"""``core.storage.dirswap``: a directory rebuilt through ``replace_dir`` is always the old one or the new one, complete.

Checks: a build that raises leaves the target untouched (never missing) and no staging copy; a process killed
(SIGKILL, a real child process) while building, between the two renames, or before deleting the old copy
leaves leftovers that the next ``recover`` turns into the old or the new target, complete; leftovers of a dead
process are restored or deleted while a running process's are kept; a copy another process swapped in first is
kept; a failed final rename puts the old copy back; concurrent swaps of one target leave one complete copy.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from core.storage import dirswap
from core.storage.dirswap import is_leftover, recover, replace_dir

REPO = Path(__file__).resolve().parents[1]
OLD = {"a.txt": "old a", "b.txt": "old b"}
NEW = {"a.txt": "new a", "b.txt": "new b", "c.txt": "new c"}
DEAD = 4194305  # above Linux's largest pid: never a running process


def write(folder: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        (folder / name).write_text(text, encoding="utf-8")


def contents(folder: Path) -> dict[str, str]:
    return {p.name: p.read_text(encoding="utf-8") for p in folder.iterdir()}


def names(parent: Path) -> list[str]:
    return sorted(p.name for p in parent.iterdir())


@pytest.fixture
def target(tmp_path: Path) -> Path:
    """``<tmp>/cache/model`` holding the OLD files."""
    folder = tmp_path / "cache" / "model"
    folder.mkdir(parents=True)
    write(folder, OLD)
    return folder


def test_first_build_creates_the_target_and_leaves_nothing_else(tmp_path: Path) -> None:
    dest = tmp_path / "new" / "model"
    with replace_dir(dest) as staging:
        assert staging.parent == dest.parent and staging.is_dir() and not any(staging.iterdir())
        assert is_leftover(staging)
        write(staging, NEW)
    assert contents(dest) == NEW and names(dest.parent) == ["model"]


def test_rebuild_replaces_the_old_directory_and_deletes_it_last(target: Path) -> None:
    with replace_dir(target) as staging:
        write(staging, NEW)
        assert contents(target) == OLD, "the old copy stays in place while the new one is built"
    assert contents(target) == NEW and names(target.parent) == ["model"]


def test_a_failed_build_leaves_the_target_untouched(target: Path) -> None:
    with pytest.raises(RuntimeError, match="disk full"), replace_dir(target) as staging:
        write(staging, {"a.txt": "half"})
        raise RuntimeError("disk full")
    assert contents(target) == OLD and names(target.parent) == ["model"]


def test_a_failed_first_build_leaves_no_target_and_no_staging(tmp_path: Path) -> None:
    dest = tmp_path / "model"
    with pytest.raises(KeyboardInterrupt), replace_dir(dest):
        raise KeyboardInterrupt
    assert names(tmp_path) == []


CHILD = """
import os, signal, sys
from pathlib import Path
from core.storage import dirswap

target, point = Path(sys.argv[1]), sys.argv[2]
renames = []
real_rename = os.rename

def rename(src, dst):
    real_rename(src, dst)
    renames.append(dst)
    if point == "between-renames" and len(renames) == 1 or point == "before-delete" and len(renames) == 2:
        os.kill(os.getpid(), signal.SIGKILL)

dirswap.os.rename = rename
with dirswap.replace_dir(target) as staging:
    for name, text in {"a.txt": "new a", "b.txt": "new b", "c.txt": "new c"}.items():
        (staging / name).write_text(text, encoding="utf-8")
        if point == "building" and name == "b.txt":
            os.kill(os.getpid(), signal.SIGKILL)
"""


@pytest.mark.parametrize(("point", "leftovers", "after"), [
    ("building", [".partial"], OLD),
    ("between-renames", [".old", ".partial"], OLD),  # the target is missing until the next recovery
    ("before-delete", [".old"], NEW),
])
def test_a_process_killed_at_any_point_leaves_the_old_or_the_new_copy(
        target: Path, point: str, leftovers: list[str], after: dict[str, str]) -> None:
    """A real child process is SIGKILLed at each point of the swap; ``recover`` then yields a complete copy."""
    done = subprocess.run([sys.executable, "-c", CHILD, str(target), point], cwd=REPO, check=False)
    assert done.returncode == -signal.SIGKILL
    left = [p for p in target.parent.iterdir() if p != target]
    assert sorted(re.sub(r"\d.*", "", p.name.removeprefix("model")) for p in left) == leftovers
    assert all(is_leftover(p) for p in left)
    assert target.exists() == (point != "between-renames")
    recover(target)  # the child is dead: its leftovers are restored or deleted
    assert contents(target) == after and names(target.parent) == ["model"]


def test_the_next_rebuild_recovers_first(target: Path) -> None:
    """A swap killed between its renames: the next ``replace_dir`` restores the old copy, then replaces it."""
    aside = target.with_name(f"model.old{DEAD}-0123abcd")
    target.rename(aside)
    with replace_dir(target) as staging:
        assert contents(target) == OLD, "restored before the build starts"
        write(staging, NEW)
    assert contents(target) == NEW and names(target.parent) == ["model"]


def test_a_dead_process_leftovers_are_cleaned_and_a_running_one_kept(target: Path) -> None:
    alive = os.getppid()  # the process that started this test
    stale = [f"model.partial{DEAD}", f"model.partial{DEAD}-0123abcd", f"model.old{DEAD}-0123abcd"]
    kept = [f"model.partial{alive}-0123abcd", f"model.old{alive}-4567cdef", f"model.partial{os.getpid()}-89abcdef"]
    unrelated = ["model.partial", "model.old7", "model-2", f"other.partial{DEAD}-0123abcd"]
    for name in stale + kept + unrelated:
        (target.parent / name).mkdir()
        write(target.parent / name, {"x.bin": "x"})
    recover(target)
    assert names(target.parent) == sorted(["model", *kept, *unrelated])
    assert contents(target) == OLD


def test_a_running_process_mid_swap_is_left_alone(target: Path) -> None:
    """The target is missing because a live process is between its renames: recovery must not interfere."""
    aside = target.with_name(f"model.old{os.getppid()}-0123abcd")
    target.rename(aside)
    recover(target)
    assert not target.exists() and contents(aside) == OLD


def test_a_copy_another_process_swapped_in_first_is_kept(target: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real_rename = os.rename
    calls: list[str] = []

    def racing_rename(src: Path, dst: Path) -> None:
        calls.append(str(dst))
        if len(calls) == 2:  # between our renames another process puts its complete copy in place
            target.mkdir()
            write(target, {"a.txt": "theirs"})
        real_rename(src, dst)

    monkeypatch.setattr(dirswap.os, "rename", racing_rename)
    with replace_dir(target) as staging:
        write(staging, NEW)
    assert contents(target) == {"a.txt": "theirs"} and names(target.parent) == ["model"]


def test_a_failed_final_rename_puts_the_old_copy_back(target: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real_rename = os.rename

    def failing_rename(src: Path, dst: Path) -> None:
        if is_leftover(Path(src)) and ".partial" in str(src):
            raise PermissionError(13, "Permission denied", str(dst))
        real_rename(src, dst)

    monkeypatch.setattr(dirswap.os, "rename", failing_rename)
    with pytest.raises(PermissionError), replace_dir(target) as staging:
        write(staging, NEW)
    assert contents(target) == OLD and names(target.parent) == ["model"]


def test_concurrent_swaps_of_one_target_leave_one_complete_copy(target: Path) -> None:
    errors: list[BaseException] = []

    def build(n: int) -> None:
        try:
            with replace_dir(target) as staging:
                write(staging, {name: f"{text} {n}" for name, text in NEW.items()})
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    for _ in range(5):
        threads = [threading.Thread(target=build, args=(n,)) for n in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert errors == []
        got = contents(target)
        n = got["a.txt"].split()[-1]
        assert got == {name: f"{text} {n}" for name, text in NEW.items()}, "one build's files, all of them"
        assert names(target.parent) == ["model"]
