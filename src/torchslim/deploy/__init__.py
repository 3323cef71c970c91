"""Deployment to a runtime: export, parity check and timing there, one backend per runtime.

======================  =======================================================================
``backend``             :class:`RuntimeBackend` protocol, :data:`BACKENDS` registry by name
``runtime``             :func:`deploy_for_timing`: export once, run once, time (a :class:`Deployment`)
``onnxruntime/``        the onnxruntime backend: ONNX export (int8 QDQ), graph passes, sessions,
                        parity, latency
``openvino/``           the OpenVINO backend: the ONNX export converted to IR, the CPU plugin
``executorch/``         the ExecuTorch backend: torch.export + XNNPACK delegate, a ``.pte`` program
``select``              :func:`select_backend`: every available backend timed on the user's batch
                        and threads, the fastest with parity kept (a :class:`Selection`)
======================  =======================================================================

OpenVINO and ExecuTorch are optional (``pip install 'torchslim[deploy]'``); a registered backend
whose runtime is missing says why through :func:`unavailable_reason`. Both are registered by
importing this package (their runtimes are imported only when used).

``deploy`` may import ``core``, ``io`` and ``measure``; none of them imports ``deploy``.
"""

from torchslim.deploy.backend import (
    BACKENDS,
    ExportFacts,
    OutputParity,
    ParityFacts,
    RuntimeBackend,
    available_backends,
    backend_names,
    compare_outputs,
    get_backend,
    register_backend,
    unavailable_reason,
)
from torchslim.deploy.executorch import EXECUTORCH, ExecuTorchBackend, ExecuTorchExport, export_executorch
from torchslim.deploy.onnxruntime import (
    ONNXRUNTIME,
    OnnxExport,
    OnnxRuntimeBackend,
    ParityReport,
    check_parity,
    export_onnx,
    integer_op_summary,
    kernel_census,
    measure_latency_onnx,
    optimized_op_counts,
    ort_session,
    run_onnx,
)
from torchslim.deploy.openvino import OPENVINO, OpenVinoBackend, OpenVinoExport, export_openvino
from torchslim.deploy.runtime import Deployment, deploy_file, deploy_for_timing
from torchslim.deploy.select import BackendFacts, Selection, markdown_table, select_backend

__all__ = [
    "BACKENDS",
    "BackendFacts",
    "Deployment",
    "EXECUTORCH",
    "ExecuTorchBackend",
    "ExecuTorchExport",
    "export_executorch",
    "ExportFacts",
    "OPENVINO",
    "OpenVinoBackend",
    "OpenVinoExport",
    "OutputParity",
    "Selection",
    "compare_outputs",
    "export_openvino",
    "markdown_table",
    "select_backend",
    "unavailable_reason",
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
    "kernel_census",
    "measure_latency_onnx",
    "optimized_op_counts",
    "ort_session",
    "register_backend",
    "run_onnx",
]
