"""The neuron core: ESU, neuron unit, evaluation unit and PEG."""
