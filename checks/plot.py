"""Miss-ratio curves as a picture: ``pagingcheck simulate --frames A-B --plot FILE``.

Drawn with matplotlib, an optional extra (``pip install 'pagingcheck[plot]'``):
it is imported only when a plot is asked for, and its absence is the user's
to fix, in one line.
"""

from __future__ import annotations

from pathlib import Path

from pagingcheck.impl.simulate import Curve
from pagingcheck.model.errors import UserError

#: The file types a plot can be written as, by suffix.
FORMATS = (".svg", ".png")


def check_target(path: Path) -> None:
    """Raise UserError unless ``path`` names a plot this can write."""
    if path.suffix.lower() not in FORMATS:
        raise UserError(f"--plot {path}: name a .svg or .png file")


def draw(curves: list[Curve], source: str, path: Path) -> None:
    """Write the fault rate against the number of frames, one line per policy, titled
    with the references' ``source``, to ``path`` (SVG or PNG, by its suffix)."""
    check_target(path)
    try:
        import matplotlib

        matplotlib.use("Agg")  # no display: a file is all that is drawn
        from matplotlib import pyplot
    except ImportError:
        raise UserError(
            "--plot needs matplotlib, an optional extra: pip install 'pagingcheck[plot]'"
        ) from None
    figure, axes = pyplot.subplots(figsize=(7, 4.5))
    for found in curves:
        frames = [point.frames for point in found.points]
        rates = [point.fault_rate for point in found.points]
        axes.plot(frames, rates, marker="." if len(frames) <= 64 else None, label=found.policy)
    references = curves[0].points[0].references if curves and curves[0].points else 0
    axes.set_title(f"miss-ratio curve: {source} ({references} references)")
    axes.set_xlabel("frames")
    axes.set_ylabel("faults per reference")
    axes.set_ylim(bottom=0)
    axes.grid(alpha=0.3)
    axes.legend()
    figure.tight_layout()
    try:
        figure.savefig(path)
    except OSError as error:
        raise UserError(f"--plot {path}: cannot write it: {error.strerror or error}") from None
    finally:
        pyplot.close(figure)
