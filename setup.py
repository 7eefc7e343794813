"""ipr's compiled parts, built by the Python packaging (pyproject.toml has
the rest). Each has a pure-Python twin that gives the same results
(ipr/native.py picks one at run time), so a build without a C compiler, or
without OpenSSL's headers, still gives a working ipr: the extensions are
optional and a failed build is only a warning.

In the checkout: ``make native`` (part of ``make setup``), which runs
``python setup.py build_ext --inplace``. In the Debian package: pip builds
them with the build machine's gcc and fails if
one does not build (docs/performance.md, "Native code").
"""
import os

from setuptools import Extension, setup

# The Debian package must ship the compiled parts: its build sets
# IPR_BUILD_NATIVE=required, and a failed compile then fails the build.
OPTIONAL = os.environ.get("IPR_BUILD_NATIVE", "optional") != "required"
CFLAGS = ["-O2", "-std=c11", "-Wall", "-Wextra", "-Wno-unused-parameter", "-fno-strict-aliasing"]

setup(ext_modules=[
    # MRT TABLE_DUMP_V2 to route batches (twin: ipr.routing.dumps.mrt + batches)
    Extension("ipr.routing.dumps._mrt", ["ipr/routing/dumps/_mrt.c"],
              extra_compile_args=CFLAGS, optional=OPTIONAL),
    # The collector's receive loop: recvmmsg, HMAC, header and replay checks
    # (twin: collector.receive.Receiver)
    Extension("collector._receive", ["collector/_receive.c"], libraries=["crypto"],
              extra_compile_args=CFLAGS, optional=OPTIONAL),
])
