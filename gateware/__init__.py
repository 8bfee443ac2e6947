"""synfab gateware: Migen/LiteX event fabric with PEG and ESU."""
