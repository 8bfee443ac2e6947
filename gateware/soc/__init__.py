"""LiteX SoC targets around the fabric: the ECP5 board SoC, the LiteX sim SoC and the host stream bridge."""
