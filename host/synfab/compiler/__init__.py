"""The compiler: a quantized network and a fabric in, the tables every core is loaded with out.

    checks   what the table fields and a core's resources can hold (MappingError, Resources)
    mapper   placement: layers split into parts (tile x channel group) and put on cores
    build    QNetwork + Placement -> Tables (`compile_network`), one builder per table
    tables   Tables / CoreTables, and their words for the RegisterMap windows (vectorised pack)
    bundle   Tables <-> the versioned binary bundle file

`from synfab.compiler import compile_network` (and the other names below) is how the rest of
synfab, and users, reach them.
"""
from .build import compile_network  # noqa: F401
from .tables import (GLOBAL_TABLE_REGS, V1_MEANING_CONSTANT, V1_MEANING_COPIED, CompileError,  # noqa: F401
                     CoreTables, Tables, at_version, empty_columns, pack, tables_to_words, unpack,
                     weights_to_words, words_to_weights)
