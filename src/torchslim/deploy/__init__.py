"""Deployment to a runtime: export, parity check and timing there, one backend per runtime.

======================  =======================================================================
``backend``             :class:`RuntimeBackend` protocol, :data:`BACKENDS` registry by name
``runtime``             :func:`deploy_for_timing`: export once, run once, time (a :class:`Deployment`)
``onnxruntime/``        the onnxruntime backend: ONNX export (int8 QDQ), graph passes, sessions,
                        parity, latency
======================  =======================================================================

``deploy`` may import ``core``, ``io`` and ``measure``; none of them imports ``deploy``.
"""

from torchslim.deploy.backend import (
    BACKENDS,
    ExportFacts,
    ParityFacts,
    RuntimeBackend,
    available_backends,
    backend_names,
    get_backend,
    register_backend,
)
from torchslim.deploy.onnxruntime import (
    ONNXRUNTIME,
    OnnxExport,
    OnnxRuntimeBackend,
    ParityReport,
    check_parity,
    export_onnx,
    integer_op_summary,
    measure_latency_onnx,
    optimized_op_counts,
    ort_session,
    run_onnx,
)
from torchslim.deploy.runtime import Deployment, deploy_file, deploy_for_timing

__all__ = [
    "BACKENDS",
    "Deployment",
    "ExportFacts",
    "ONNXRUNTIME",
    "OnnxExport",
    "OnnxRuntimeBackend",
    "ParityFacts",
    "ParityReport",
    "RuntimeBackend",
    "available_backends",
    "backend_names",
    "check_parity",
    "deploy_file",
    "deploy_for_timing",
    "export_onnx",
    "get_backend",
    "integer_op_summary",
    "measure_latency_onnx",
    "optimized_op_counts",
    "ort_session",
    "register_backend",
    "run_onnx",
]
