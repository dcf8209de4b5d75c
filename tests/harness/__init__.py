"""CPU execution harness for the CUDA kernels in ``snntorch_egru/cuda/kernels/`` (tests only, not shipped).

``snntorch_egru/cuda/kernels/*.cu`` are compiled unchanged as C++20 with a small CUDA shim (``cuda_host.h``,
``host_runtime.cpp``; one OS thread per CUDA thread) and driven through the package's own
launcher (:class:`snntorch_egru.cuda._cupy.CupyLauncher`) by :class:`hostkernels.HostLauncher`,
which replaces only the device queries and the final launch.
"""
