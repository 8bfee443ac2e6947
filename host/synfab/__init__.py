"""synfab: event-based CNN fabric with synapse compression (PEG + ESU) — host package."""
__version__ = "0.1.0"

from .config import FabricConfig, PRESETS  # noqa: F401
from .errors import SynfabError  # noqa: F401

# Where modules lived before the package was laid out as its data path (issue 10): each old name
# is the very module object of its new home, so `import synfab.mapper`, `from synfab import
# netx`, relative imports of the old names and monkeypatching all behave as before.
# synfab.compiler and synfab.model are now packages that re-export what the old modules held.
MOVED_MODULES = {
    "ir": "frontend.ir", "netfile": "frontend.netfile", "torch_import": "frontend.torch_import",
    "quant": "frontend.quant", "netx": "frontend.netx", "netx_vectors": "frontend.netx_vectors",
    "h5check": "frontend.h5check",
    "mapper": "compiler.mapper", "bundle": "compiler.bundle",
    "reference": "model.reference",
    "footprint": "analysis.footprint", "zoo": "analysis.zoo", "plots": "analysis.plots",
    "bench": "analysis.bench", "workloads": "analysis.workloads",
}


def _install_moved_modules() -> None:
    import importlib
    import importlib.abc
    import importlib.util
    import sys

    class MovedModules(importlib.abc.MetaPathFinder, importlib.abc.Loader):
        def find_spec(self, fullname, path=None, target=None):
            pkg, _, name = fullname.rpartition(".")
            if pkg == __name__ and name in MOVED_MODULES:
                return importlib.util.spec_from_loader(fullname, self)
            return None

        def create_module(self, spec):
            module = importlib.import_module(f"{__name__}.{MOVED_MODULES[spec.name.rpartition('.')[2]]}")
            self.spec = module.__spec__        # importlib sets __spec__ to the alias's; put it back
            return module

        def exec_module(self, module):
            module.__spec__ = self.spec

    if not any(type(f).__name__ == "MovedModules" for f in sys.meta_path):
        sys.meta_path.insert(0, MovedModules())     # before finders that know the old files


_install_moved_modules()
