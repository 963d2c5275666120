"""Map the repository's folders to import names: framework/ -> qf, plugins/ -> qf_plugins.

Everything else about the distribution is in pyproject.toml.
"""

from setuptools import find_packages, setup


def _mapped(folder: str, name: str) -> list[str]:
    return [name] + [f"{name}.{sub}" for sub in find_packages(folder)]


setup(
    package_dir={"qf": "framework", "qf_plugins": "plugins"},
    packages=_mapped("framework", "qf") + _mapped("plugins", "qf_plugins"),
)
