"""Build script: compiles the Cython kernels, with OpenMP when the compiler has it.

Environment: FASTDECODE_DISABLE_OPENMP=1 builds serial kernels; FASTDECODE_REQUIRE_OPENMP=1
makes the build fail instead of falling back to serial kernels (release builds set it).
"""
import glob
import os
import shlex
import sys
import tempfile
import textwrap

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

OPENMP_TEST = textwrap.dedent(
    """
    #include <omp.h>
    int main(void) {
        int n = 0;
        #pragma omp parallel reduction(+:n)
        n += 1;
        return n > 0 ? 0 : 1;
    }
    """
)


def _env_flag(name):
    """True when the environment variable is set to anything but empty or 0."""
    return os.environ.get(name, "") not in ("", "0")


def _openmp_flags(compiler):
    """Return (compile_args, link_args) enabling OpenMP, or None when unsupported."""
    if _env_flag("FASTDECODE_DISABLE_OPENMP"):
        return None
    if compiler.compiler_type == "msvc":
        candidates = [(["/openmp"], [])]
    elif sys.platform == "darwin":
        candidates = [(["-Xpreprocessor", "-fopenmp"], ["-lomp"]), (["-fopenmp"], ["-fopenmp"])]
    else:
        candidates = [(["-fopenmp"], ["-fopenmp"])]
    with tempfile.TemporaryDirectory() as tmp:
        source = os.path.join(tmp, "omp_test.c")
        with open(source, "w") as f:
            f.write(OPENMP_TEST)
        # The extensions are linked with LDFLAGS (e.g. -L of a Homebrew libomp) but a test
        # executable is not: pass them explicitly so the test sees the same libraries.
        env_ldflags = shlex.split(os.environ.get("LDFLAGS", ""))
        for cflags, lflags in candidates:
            try:
                objects = compiler.compile([source], output_dir=tmp, extra_postargs=cflags)
                compiler.link_executable(objects, os.path.join(tmp, "omp_test"),
                                         extra_postargs=lflags + env_ldflags)
            except Exception:
                continue
            return cflags, lflags
    return None


class BuildExt(build_ext):
    """build_ext that test-compiles an OpenMP program and falls back to a serial build."""

    def build_extensions(self):
        flags = _openmp_flags(self.compiler)
        if flags is None and _env_flag("FASTDECODE_REQUIRE_OPENMP"):
            raise RuntimeError("fastdecode: FASTDECODE_REQUIRE_OPENMP is set but the compiler "
                               "cannot build and link an OpenMP program")
        if flags is None:
            print("fastdecode: OpenMP not available, building serial kernels")
        else:
            print("fastdecode: building with OpenMP (%s)" % " ".join(flags[0]))
        for ext in self.extensions:
            if self.compiler.compiler_type != "msvc":
                ext.extra_compile_args += ["-O3"]
            if flags is not None:
                ext.extra_compile_args += flags[0]
                ext.extra_link_args += flags[1]
        super().build_extensions()


def _extensions():
    """One extension per ``.pyx`` file under ``fastdecode/`` (module name from its path)."""
    from Cython.Build import cythonize

    sources = sorted(glob.glob(os.path.join("fastdecode", "**", "*.pyx"), recursive=True))
    exts = [
        Extension(
            os.path.splitext(src)[0].replace(os.sep, "."),
            [src],
            include_dirs=["fastdecode"],
            define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")],
        )
        for src in sources
    ]
    return cythonize(
        exts,
        compiler_directives={"language_level": "3", "boundscheck": False, "wraparound": False,
                             "cdivision": True, "initializedcheck": False},
    )


setup(ext_modules=_extensions(), cmdclass={"build_ext": BuildExt})
