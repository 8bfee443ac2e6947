"""PYNQ-Z2 Vivado flow: IP packaging and block-design Tcl around the generated Verilog."""
from .project import (PART, address_range, block_design_tcl, build_tcl, fabric_base, overlay_name,
                      package_ip_tcl, verilog_ports, write_project)

__all__ = ["PART", "address_range", "block_design_tcl", "build_tcl", "fabric_base", "overlay_name",
           "package_ip_tcl", "verilog_ports", "write_project"]
