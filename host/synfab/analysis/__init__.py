"""Analysis: the memory footprint of a network under four connectivity schemes (`footprint`), the
shape-only zoo of large CNNs (`zoo`), plots (`plots`), and the simulated-cycle figures of
`synfab bench` (`bench`) on the real workloads (`workloads`)."""
