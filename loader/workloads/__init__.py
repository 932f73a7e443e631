"""Workloads in: public FaaS traces and workload specifications → reproducible FaaSLoad traces.

``python -m loader.workloads SOURCE ... --out OUTDIR`` (docs/workloads.md).  One module
per concept: the sources (:mod:`.azure2019`, :mod:`.azure2021`, :mod:`.faasprofiler`,
:mod:`.synthetic` over :mod:`.specs`), when invocations happen (:mod:`.arrivals`), which
functions are kept (:mod:`.sampling`), which action each invokes (:mod:`.mapping`),
per-invocation draws (:mod:`.draws`), the platform's limits (:mod:`.limits`), names
(:mod:`.naming`), the run (:mod:`.conversion`) and the files written (:mod:`.output`).  Nothing happens at import.
"""
