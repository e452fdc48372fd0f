"""Builds fastmask._C: C++17 kernels behind pybind11, OpenMP, no libtorch (see docs/architecture.md)."""
import glob
import os

from pybind11.setup_helpers import ParallelCompile, Pybind11Extension, build_ext
from setuptools import setup

# Compile the sources in parallel (all cores; NPY_NUM_BUILD_JOBS overrides).
ParallelCompile("NPY_NUM_BUILD_JOBS").install()

ext = Pybind11Extension(
    "fastmask._C",
    sources=sorted(os.path.relpath(p) for p in glob.glob(os.path.join(os.path.dirname(os.path.abspath(__file__)), "csrc", "*.cpp"))),
    include_dirs=["csrc"],
    cxx_std=17,
    # No -march=native: the wheel must run on any x86-64 / aarch64 machine it is copied to.
    extra_compile_args=["-O3", "-fopenmp"],
    extra_link_args=["-fopenmp"],
)

setup(ext_modules=[ext], cmdclass={"build_ext": build_ext})
