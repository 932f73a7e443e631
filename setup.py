"""Build hook of the faasload distribution (everything else is in pyproject.toml).

The example configuration lives in ``config/`` at the top of the repository, outside any
package; a built wheel carries a copy in ``faasload/examples/config/`` so that
:mod:`faasload.resources` finds it without the repository.
"""

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

EXAMPLE_CONFIG = Path(__file__).resolve().parent / "config"


class BuildWithExampleConfig(build_py):
    def run(self) -> None:
        super().run()
        if getattr(self, "editable_mode", False):  # an editable install reads the checkout's config/
            return
        target = Path(self.build_lib) / "faasload" / "examples" / "config"
        target.mkdir(parents=True, exist_ok=True)
        for source in sorted(EXAMPLE_CONFIG.glob("*.yml")):
            shutil.copyfile(source, target / source.name)


setup(cmdclass={"build_py": BuildWithExampleConfig})
