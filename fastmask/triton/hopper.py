"""Compile every Triton kernel of fastmask for Hopper (sm_90) without a GPU, and report the
registers, stack and local (spill) memory each uses. The interpreter accepts code that the GPU
compiler rejects, so CI runs this too. Must run without TRITON_INTERPRET:

    python -m fastmask.triton.hopper [--json]
"""
from __future__ import annotations

import argparse
import importlib
import json
import os
import pkgutil
import re
import subprocess
import tempfile

import triton
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource

HOPPER = GPUTarget("cuda", 90, 32)


def kernel_modules():
    """Every `_*_kernels.py` module of fastmask.triton."""
    package = importlib.import_module("fastmask.triton")
    for info in pkgutil.iter_modules(package.__path__):
        if info.name.startswith("_") and info.name.endswith("_kernels"):
            yield importlib.import_module(f"fastmask.triton.{info.name}")


def kernels_without_specs() -> list[str]:
    """Kernels (jit functions named *_kernel) that no HOPPER_SPECS entry compiles."""
    missing = []
    for module in kernel_modules():
        specced = {spec[0].__name__ for spec in getattr(module, "HOPPER_SPECS", [])}
        for name, value in vars(module).items():
            if isinstance(value, triton.runtime.JITFunction) and name.endswith("_kernel") and name not in specced:
                missing.append(f"{module.__name__}.{name}")
    return missing


def resource_usage(cubin: bytes) -> dict[str, int]:
    """REG, STACK, SHARED and LOCAL of a cubin, read by the cuobjdump that ships with triton."""
    tool = os.path.join(os.path.dirname(triton.__file__), "backends", "nvidia", "bin", "cuobjdump")
    with tempfile.NamedTemporaryFile(suffix=".cubin") as file:
        file.write(cubin)
        file.flush()
        text = subprocess.run([tool, "--dump-resource-usage", file.name], capture_output=True, text=True, check=True).stdout
    return {key.lower(): int(value) for key, value in re.findall(r"\b(REG|STACK|SHARED|LOCAL):(\d+)", text)}


def compile_all() -> list[dict]:
    results = []
    for module in kernel_modules():
        # An entry is (kernel, argument types, constexprs) or that plus the launch's compile options
        # (e.g. {"num_warps": 8}), so registers are counted as the launcher runs the kernel.
        for fn, signature, constexprs, *options in module.HOPPER_SPECS:
            compiled = triton.compile(ASTSource(fn, signature, constexprs), target=HOPPER, options=options[0] if options else None)
            usage = resource_usage(compiled.asm["cubin"])
            results.append({"kernel": fn.__name__, "constexprs": constexprs, "num_warps": compiled.metadata.num_warps, **usage})
    return results


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    args = parser.parse_args(argv)
    if os.environ.get("TRITON_INTERPRET") == "1":
        raise SystemExit("unset TRITON_INTERPRET: the interpreter replaces jit functions")
    report = {"missing_specs": kernels_without_specs(), "kernels": compile_all()}
    if args.json:
        print(json.dumps(report))
        return
    for row in report["kernels"]:
        print(f"{row['kernel']:<32} {row['constexprs']}  regs={row['reg']} stack={row['stack']} local={row['local']} warps={row['num_warps']}")
    for name in report["missing_specs"]:
        print(f"MISSING SPEC: {name}")


if __name__ == "__main__":
    main()
