"""Loss-landscape geometry of a run: directions in parameter space (``directions``), the grid engine and
its storage (``grids``, ``storage``), run-level curves, surfaces and segments (``landscape``), grids cut
into shards for an executor (``sharding``), projected trajectories (``trajectories``), flatness numbers of
a grid (``flatness``), basin widths by line search (``linesearch``), curvature from Hessian-vector
products (``curvature``) and the per-layer measures (``layers``). Every function takes explicit arguments
with literal defaults; none reads a profile.

May import: :mod:`bertscape.base`, :mod:`bertscape.data`, :mod:`bertscape.runs`, :mod:`bertscape.compute`.
"""
