"""Network-on-chip: XY-routed mesh of 5-port routers (plus the host port at core 0)."""
from .mesh import Mesh
from .router import Router, RoundRobinArbiter, router_ports

__all__ = ["Mesh", "Router", "RoundRobinArbiter", "router_ports"]
