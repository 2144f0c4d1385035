"""OAR, the Grenoble cluster batch scheduler, rebuilt in Python as an appliance."""

__version__ = "0.1.0"


def _peewee_without_psycopg() -> None:
    """Import peewee, when something first imports it, without its PostgreSQL drivers.

    Peewee imports psycopg at its own import (0.2 to 0.4 s of every command's start, most of
    an ``oarsub``), even for SQLite.  A finder masks the drivers during that import only;
    :func:`oar_appliance.db.connection._postgresql_class` gives peewee psycopg 3 when a
    PostgreSQL database is opened.  When psycopg is already imported, nothing is masked.
    """
    import importlib.abc
    import importlib.machinery
    import sys

    drivers = ("psycopg", "psycopg2", "psycopg2cffi")

    class Loader(importlib.abc.Loader):
        def __init__(self, loader):
            self.loader = loader

        def create_module(self, spec):
            return self.loader.create_module(spec)

        def exec_module(self, module):
            masked = [name for name in drivers if name not in sys.modules]
            for name in masked:
                sys.modules[name] = None          # "import psycopg" raises ImportError
            try:
                self.loader.exec_module(module)
            finally:
                for name in masked:
                    if sys.modules.get(name, 0) is None:
                        del sys.modules[name]

    class Finder(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path, target=None):
            if name != "peewee":
                return None
            sys.meta_path.remove(self)            # once
            spec = importlib.machinery.PathFinder.find_spec(name, path)
            if spec is not None and spec.loader is not None and "psycopg" not in sys.modules:
                spec.loader = Loader(spec.loader)
            return spec

    if "peewee" not in sys.modules:
        sys.meta_path.insert(0, Finder())


_peewee_without_psycopg()
