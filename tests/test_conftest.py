"""The session fixture that fails a run whose tests leave files behind (conftest.py)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap

import pytest

DIRTY_TESTS = '''
import os
import tempfile


def test_writes_into_tmp_path(tmp_path):      # allowed: pytest's tmp dir
    (tmp_path / "fine.txt").write_text("x")


def test_writes_into_cwd():                   # a leftover
    with open("left_in_cwd.txt", "w") as f:
        f.write("x")


def test_leaves_a_temp_dir():                 # a leftover
    os.makedirs(os.path.join(tempfile.gettempdir(), "left_in_tmp"))


def test_cleans_up_after_itself():            # allowed: gone before the end
    path = os.path.join(tempfile.gettempdir(), "transient.txt")
    with open(path, "w") as f:
        f.write("x")
    os.remove(path)
'''


@pytest.mark.slow
def test_leftover_files_fail_the_session_and_are_listed(tmp_path):
    repo, temp = tmp_path / "repo", tmp_path / "tmp"
    (repo / "tests").mkdir(parents=True)
    temp.mkdir()
    shutil.copy(os.path.join(os.path.dirname(__file__), "conftest.py"), repo / "tests")
    (repo / "tests" / "test_dirty.py").write_text(textwrap.dedent(DIRTY_TESTS))
    (repo / "pytest.ini").write_text("[pytest]\n")
    env = {**os.environ, "TMPDIR": str(temp), "TF_CPP_MIN_LOG_LEVEL": "3"}
    env.pop("SALIENCY_TF1_SKIP_LEFTOVER_CHECK", None)
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests"],
        cwd=repo, env=env, capture_output=True, text=True, timeout=300,
    )
    out = run.stdout + run.stderr
    assert run.returncode != 0, out
    assert "4 passed, 1 error" in out, out
    assert "tests left 2 new path(s)" in out, out
    assert str(repo / "left_in_cwd.txt") in out
    assert str(temp / "left_in_tmp") in out
    for allowed in ("fine.txt", "transient.txt", "__pycache__"):
        assert allowed not in out, out
