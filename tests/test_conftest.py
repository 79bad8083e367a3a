"""The session fixture that fails a run whose tests leave files behind (conftest.py)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import textwrap

import pytest

DIRTY_TESTS = '''
import os
import subprocess
import sys
import tempfile

REAL_TMP = os.environ["REAL_TMP"]


def test_writes_into_tmp_path(tmp_path):      # allowed: pytest's tmp dir
    (tmp_path / "fine.txt").write_text("x")


def test_writes_into_cwd():                   # a leftover
    with open("left_in_cwd.txt", "w") as f:
        f.write("x")


def test_leaves_a_tempfile_dir():             # a leftover (in the session's private temp dir)
    os.makedirs(os.path.join(tempfile.gettempdir(), "left_by_tempfile"))


def test_writes_a_hardcoded_temp_path():      # a leftover
    with open(os.path.join(REAL_TMP, "left_hardcoded.txt"), "w") as f:
        f.write("x")


def test_cleans_up_after_itself():            # allowed: gone before the end
    path = os.path.join(REAL_TMP, "transient.txt")
    with open(path, "w") as f:
        f.write("x")
    os.remove(path)


def test_another_process_writes():            # in the cwd: counts only in strict mode
    for path in (os.path.join(os.getcwd(), "other_process.txt"),
                 os.path.join(REAL_TMP, "other_process_tmp.txt")):  # shared temp: never
        code = "open(r'" + path + "', 'w').close()"
        subprocess.run([sys.executable, "-c", code], check=True)
'''


def _start(root, *, strict: bool) -> tuple[subprocess.Popen, str, str]:
    repo, temp = root / "repo", root / "tmp"
    (repo / "tests").mkdir(parents=True)
    temp.mkdir()
    shutil.copy(os.path.join(os.path.dirname(__file__), "conftest.py"), repo / "tests")
    (repo / "tests" / "test_dirty.py").write_text(textwrap.dedent(DIRTY_TESTS))
    (repo / "pytest.ini").write_text("[pytest]\n")
    env = {**os.environ, "TMPDIR": str(temp), "REAL_TMP": str(temp),
           "TF_CPP_MIN_LOG_LEVEL": "3"}
    env.pop("CI", None)
    env.pop("SALIENCY_TF1_STRICT_LEFTOVER_CHECK", None)
    if strict:
        env["SALIENCY_TF1_STRICT_LEFTOVER_CHECK"] = "1"
    process = subprocess.Popen(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests"],
        cwd=repo, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    return process, str(repo), str(temp)


@pytest.mark.slow
def test_leftover_files_fail_the_session_and_are_listed(tmp_path):
    runs = {strict: _start(tmp_path / f"strict{strict}", strict=strict)
            for strict in (False, True)}
    for strict, (process, repo, temp) in runs.items():
        out, _ = process.communicate(timeout=300)
        assert process.returncode != 0, out
        assert re.search(r"6 passed(, \d+ warnings?)?, 1 error", out), out
        leftovers = ["left_in_cwd.txt", "left_by_tempfile", "left_hardcoded.txt"]
        if strict:
            leftovers.append("other_process.txt")
        else:
            assert "other_process.txt" not in out, out
        assert f"tests left {len(leftovers)} new path(s)" in out, out
        assert os.path.join(repo, "left_in_cwd.txt") in out
        assert os.path.join(temp, "left_hardcoded.txt") in out
        assert "tempfile_dir" in out and "left_by_tempfile" in out
        for allowed in ("fine.txt", "transient.txt", "__pycache__", "other_process_tmp.txt"):
            assert allowed not in out, out
