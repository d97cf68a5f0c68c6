"""The kernel library: what any kernel may build on, and the reference kernel does.

Kernel software that is not one kernel's design: the kernel-region
allocator (:mod:`kalloc`), creating and editing page tables in every format
(:mod:`pagetable`), PTE edits that carry their TLB duty (:mod:`vm`),
restarting a faulted instruction (:mod:`restart`), the frame and swap-slot
protocols written once for running and proving (:mod:`frames`,
:mod:`swap`, :mod:`logic`), the replacement policies (:mod:`replacement`),
trial memory edits (:mod:`memory`) and the choices that depend only on
identity (:mod:`identity`). Everything here reaches the hardware through
the port a kernel is handed; nothing here is required.
"""
