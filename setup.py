"""The wheel carries the shipped search spaces, studies and examples as package data (``hpo/shipped/``), so an
installed hpo has something to run; in a checkout they stay the top-level folders that users edit (one copy in
the repository, found by :mod:`hpo.config.shipped` either way). Everything else is in pyproject.toml."""

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

FOLDERS = ("search_spaces", "studies", "examples")


class BuildWithShipped(build_py):
    def run(self) -> None:
        super().run()
        root = Path(__file__).resolve().parent
        target = Path(self.build_lib) / "hpo" / "shipped"
        for name in FOLDERS:
            if (root / name).is_dir():
                shutil.copytree(
                    root / name,
                    target / name,
                    dirs_exist_ok=True,
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "*.db", "reports"),
                )


setup(cmdclass={"build_py": BuildWithShipped})
