"""The experiment report: ``python -m loader.report EXPERIMENT [EXPERIMENT...] --out DIR`` (docs/report.md).

:mod:`.data` gathers an experiment from the dataset, :mod:`.tables` and :mod:`.figures`
make its tables (pandas) and figures (matplotlib, via :mod:`.plotting`), :mod:`.html`
renders the self-contained page and :mod:`.build` writes it all.
"""

from .build import Report, ReportError, write_report
from .data import ReportOptions

__all__ = ["Report", "ReportError", "ReportOptions", "write_report"]
