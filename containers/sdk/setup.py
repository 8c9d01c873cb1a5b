"""clipper-container-sdk's compiled parts, built only when CLIPPER_SDK_NATIVE=1 (Cython and a C++
compiler on the building host): the shared-memory ring (`_shm_ring`, over the frontend's own
`rpc/shm_ring.h`, staged under include/) and the native receive/reply path (`_native_codec`). The
result is a wheel for the building interpreter only (e.g. cp311-cp311-linux_x86_64); without the
variable the same sources make the pure-Python wheel, which serves over ZeroMQ with the Python codec.
Staged and run by clipper.managers.docker_images.build_sdk_wheel, which builds both."""

import os

from setuptools import setup

extensions = []
if os.environ.get("CLIPPER_SDK_NATIVE") == "1":
    # numpy's headers: _native_codec makes its arrays through numpy's C API (built against numpy 2.x,
    # it runs with numpy 1.23 and later too).
    import numpy
    from Cython.Build import cythonize
    from setuptools import Extension

    extensions = cythonize(
        [
            Extension(
                f"clipper.container.{module}",
                [f"clipper/container/{module}.pyx"],
                include_dirs=["include", numpy.get_include()],
                define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")],
                language="c++",
                extra_compile_args=["-std=c++17", "-O2", "-g0"],
            )
            for module in ("_shm_ring", "_native_codec")
        ],
        include_path=["."],
        compiler_directives={"language_level": 3},
    )

setup(ext_modules=extensions)
