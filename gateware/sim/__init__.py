"""Verilator simulation of synfab_fabric: C++ harness, cached build, Python binding."""
from .build import SimBuildError, build_fabric, build_verilog, cache_root  # noqa: F401
from .fabric_sim import AXILiteError, SimError, SimFabric  # noqa: F401
