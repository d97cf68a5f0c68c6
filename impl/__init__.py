"""Kernels and their library: everything that runs on the hardware through its port.

* :mod:`~pagingcheck.impl.interface`: the kernel interface every kernel implements;
* :mod:`~pagingcheck.impl.lib`: the kernel library any kernel may build on;
* :mod:`~pagingcheck.impl.reference`: the reference kernel;
* :mod:`~pagingcheck.impl.minimal`: a small kernel written from the documentation;
* :mod:`~pagingcheck.impl.mutants`: the reference kernel with seeded bugs;
* :mod:`~pagingcheck.impl.simulate`: trace-driven simulation of the replacement policies.
"""
