"""The compiler: a quantized network and a fabric in, the tables every core is loaded with out.

    mapper   placement: layers split into parts (tile x channel group) and put on cores
    build    QNetwork + Placement -> Tables (`compile_network`)
    bundle   Tables <-> the versioned binary bundle file

`from synfab.compiler import compile_network` (and the other names below) is how the rest of
synfab, and users, reach them.
"""
from .build import (GLOBAL_TABLE_REGS, V1_MEANING_CONSTANT, V1_MEANING_COPIED, CompileError,  # noqa: F401
                    CoreTables, Tables, at_version, compile_network, empty_columns, tables_to_words,
                    weights_to_words, words_to_weights)
