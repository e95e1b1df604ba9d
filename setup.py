"""Only the optional C accelerator lives here; all metadata is in pyproject.toml.

``optional=True``: on a machine without a C compiler (or Python headers) the
build of ``asttapi_server.ami._speedups`` fails with a warning and the install
goes on; the parser then uses its pure-Python twins, which give the same
messages at about half the ingest speed (README, "Performance").
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "asttapi_server.ami._speedups",
            ["asttapi_server/ami/_speedups.c"],
            optional=True,
        )
    ]
)
