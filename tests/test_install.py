"""Without the C++ build, `import fastmask` warns once and CPU ops use the reference; with
FASTMASK_REQUIRE_CPP=1 a missing build is an error. Run in subprocesses that hide fastmask._C.
Marked slow (each compiles the C++ kernels): a wheel installs and runs with no source tree, and an
editable install is not shadowed by a folder named fastmask in the working directory."""
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

HIDE_C = textwrap.dedent(
    """
    import importlib.abc, sys

    class HideC(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path, target=None):
            if name == "fastmask._C":
                raise ImportError("hidden by the test")

    sys.meta_path.insert(0, HideC())
    """
)


def run(code: str, **env) -> subprocess.CompletedProcess:
    environ = {k: v for k, v in os.environ.items() if k not in ("FASTMASK_REQUIRE_CPP", "TRITON_INTERPRET")} | env
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=environ)


def test_missing_cpp_warns_once_and_falls_back():
    done = run(
        HIDE_C
        + textwrap.dedent(
            """
            import warnings
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                import torch, fastmask
                import fastmask.functional
                out = fastmask.random_words(3, torch.arange(2), 5)
            messages = [str(w.message) for w in caught if "fastmask._C" in str(w.message)]
            assert len(messages) == 1, messages
            assert not fastmask.HAS_CPP
            assert torch.equal(out, fastmask.random_words(3, torch.arange(2), 5, backend="reference"))
            try:
                fastmask.random_words(3, torch.arange(2), 5, backend="cpp")
            except RuntimeError as error:
                assert "backend='cpp' needs the C++ extension" in str(error)
            else:
                raise AssertionError("backend='cpp' ran without _C")
            print("ok")
            """
        )
    )
    assert done.returncode == 0, done.stderr[-4000:]
    assert done.stdout.strip() == "ok"


def test_require_cpp_makes_a_missing_build_an_error():
    done = run(HIDE_C + "import fastmask\n", FASTMASK_REQUIRE_CPP="1")
    assert done.returncode != 0
    assert "FASTMASK_REQUIRE_CPP=1 but the C++ extension fastmask._C is missing" in done.stderr


def test_triton_on_cpu_without_interpreter_is_a_clear_error():
    code = textwrap.dedent(
        """
        import torch, fastmask
        try:
            fastmask.random_words(3, torch.arange(2), 5, backend="triton")
        except ValueError as error:
            assert "needs the Triton interpreter" in str(error), error
            print("ok")
        """
    )
    done = run(code)
    assert done.returncode == 0, done.stderr[-4000:]
    assert done.stdout.strip() == "ok"


# --- installing like a library: a wheel without the source tree, an editable install beside a script --------

REPO = Path(__file__).resolve().parents[1]
SOURCES = shutil.ignore_patterns("build", "dist", "*.egg-info", "*.so", ".git", "__pycache__", ".make", ".hypothesis",
                                 ".pytest_cache", ".benchmarks", "bench", "tests", "examples", "docs")
USE = textwrap.dedent(
    """
    import torch, fastmask
    from fastmask.integrations import hf  # noqa: F401
    assert fastmask.HAS_CPP, "no C++ build"
    out = fastmask.mask_tokens(torch.arange(5, 69).reshape(2, 32), seed=0, mask_token_id=4, vocab_size=100)
    assert out.labels.shape == (2, 32)
    print(fastmask.__file__)
    """
)


def _venv(tmp_path) -> Path:
    """A virtual environment that sees this interpreter's packages (torch, ...) but not its fastmask."""
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", str(tmp_path / "venv")], check=True)
    return tmp_path / "venv" / "bin" / "python"


def _pip(python: Path, *args: str) -> None:
    done = subprocess.run([str(python), "-m", "pip", "--disable-pip-version-check", "-q", *args],
                          capture_output=True, text=True, timeout=1500)
    assert done.returncode == 0, done.stderr[-4000:]


def _use(python: Path, cwd: Path) -> str:
    environ = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "TRITON_INTERPRET")}
    done = subprocess.run([str(python), "-c", USE], capture_output=True, text=True, timeout=300, cwd=cwd, env=environ)
    assert done.returncode == 0, done.stderr[-4000:]
    return done.stdout.strip().splitlines()[-1]


@pytest.mark.slow
@pytest.mark.timeout(3000)
def test_a_wheel_installs_and_runs_without_the_source_tree(tmp_path):
    source = tmp_path / "source"
    shutil.copytree(REPO, source, ignore=SOURCES)
    _pip(Path(sys.executable), "wheel", "--no-deps", "--no-build-isolation", "-w", str(tmp_path / "wheels"), str(source))
    (wheel,) = (tmp_path / "wheels").glob("fastmask-*.whl")
    shutil.rmtree(source)
    python = _venv(tmp_path)
    _pip(python, "install", "--no-deps", "--no-index", str(wheel))
    work = tmp_path / "work"
    (work / "fastmask").mkdir(parents=True)  # a stray folder of the package's name in the working directory
    assert "site-packages" in _use(python, work)


@pytest.mark.slow
@pytest.mark.timeout(3000)
def test_an_editable_clone_named_fastmask_beside_a_script_is_not_shadowed(tmp_path):
    """A clone at ./fastmask is a folder without __init__.py: setuptools' editable finder lost to it
    (an empty namespace package); the .pth install puts the clone itself on sys.path instead."""
    clone = tmp_path / "work" / "fastmask"
    shutil.copytree(REPO, clone, ignore=SOURCES)
    python = _venv(tmp_path)
    _pip(python, "install", "--no-deps", "--no-build-isolation", "-e", str(clone))
    assert _use(python, clone.parent) == str(clone / "fastmask" / "__init__.py")
def test_core_imports_without_rich():
    """rich is a [bench] extra: the ops, losses and collators import and run without it."""
    code = textwrap.dedent(
        """
        import importlib.abc, sys

        class HideRich(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path, target=None):
                if name == "rich" or name.startswith("rich."):
                    raise ImportError("hidden by the test")

        sys.meta_path.insert(0, HideRich())
        import torch, fastmask, fastmask.collators, fastmask.nn, fastmask.spans, fastmask.t5, fastmask.image
        fastmask.mask_tokens(torch.arange(8).reshape(2, 4), mask_token_id=0, vocab_size=8, seed=0)
        assert "rich" not in sys.modules
        print("ok")
        """
    )
    done = run(code)
    assert done.returncode == 0, done.stderr[-4000:]
    assert done.stdout.strip() == "ok"
