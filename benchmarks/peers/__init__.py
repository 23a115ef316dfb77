"""The peers the benchmarks compare against. ``*_peer.py`` run in their own environments (``make peers``) and
import nothing from this repository; :mod:`peers.process` is the side that drives them from the toolchain's."""
