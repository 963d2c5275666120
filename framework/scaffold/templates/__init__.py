"""Template files of ``qf new-plugin`` (read with :mod:`importlib.resources`; not Python code).

This folder is a package so that setuptools ships its ``*.tmpl`` files as package data: the
``"*" = ["*.tmpl"]`` glob of pyproject.toml matches files directly inside a package, not in sub-folders.
"""
