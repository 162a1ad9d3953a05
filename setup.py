"""Packaging glue: ship the top-level api_pipelines/ and example_data/ folders inside the wheel.

They live at the repository top level (where users and `dataflow init` expect them) and are mapped
into the package `dataflow._scaffold` so that a normal, non-editable install carries them too.
"""
from setuptools import find_packages, setup

SCAFFOLD = {
    "dataflow._scaffold.api_pipelines": "api_pipelines",
    "dataflow._scaffold.example_data": "example_data",
}

_JUNK = (
    "__pycache__/*", "**/__pycache__/*", "*.pyc", "**/*.pyc",
    "cache/*", "cache/**/*", "**/cache/*", "**/cache/**/*",
    "output/*", "output/**/*", "**/output/*", "**/output/**/*",
)

setup(
    packages=find_packages(include=["dataflow", "dataflow.*"]) + list(SCAFFOLD),
    package_dir=SCAFFOLD,
    package_data={
        "dataflow.prompts": ["templates/*.j2"],
        "dataflow.quality.calibration": ["*.jsonl", "*.json"],
        "dataflow._scaffold.api_pipelines": ["**/*"],
        "dataflow._scaffold.example_data": ["**/*"],
    },
    # never ship a developer's run artefacts from the scaffold folders
    exclude_package_data={pkg: list(_JUNK) for pkg in SCAFFOLD},
    include_package_data=False,
)
