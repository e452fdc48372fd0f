"""Without the C++ build, `import fastmask` warns once and CPU ops use the reference; with
FASTMASK_REQUIRE_CPP=1 a missing build is an error. Run in subprocesses that hide fastmask._C."""
import os
import subprocess
import sys
import textwrap

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
