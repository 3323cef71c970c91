"""Read-only measurement: parameters, nonzeros, MACs, bytes, latency, accuracy, agreement, energy.

Nothing here changes a model: every function restores training/eval modes, removes the hooks it
adds and leaves parameters and buffers untouched. Results are dataclasses.

=====================  ==========================================================================
``count_parameters``   unique stored parameters (shared counted once)
``count_nonzero``      nonzeros of the effective (masked / parametrized) weights
``count_macs``         multiply-accumulates via ``torch.utils.flop_counter`` (MACs = FLOPs / 2)
``measure_latency``    median of timed repeats after warm-up, threads recorded (PyTorch eager; a
                       runtime's latency comes from ``torchslim.deploy`` as a ``RuntimeTimer``)
``compare_latency``    interleaved A/B timing, ratio of medians
``evaluate``           top-1 accuracy and mean loss
``compare_models``     top-1 agreement, KL, cosine, SQNR of two models' outputs
``directory_bytes``    bytes on disk of an artifact directory
``estimate_energy``    analytical energy per inference from a cited per-operation table
``measure_energy``     RAPL / NVML joules per inference, or ``NotMeasurable``
``analyze``            all of the above as one ``ModelStats``
=====================  ==========================================================================
"""

from torchslim.measure._util import num_threads
from torchslim.measure.accuracy import EvalStats, evaluate, head_mismatch
from torchslim.measure.agreement import Agreement, compare_models, cosine, kl_divergence, sqnr_db
from torchslim.measure.analyze import analyze
from torchslim.measure.energy import (
    COMPUTE_CLASSES,
    DEFAULT_PROFILE,
    SPARSE_KERNEL_ATTRIBUTE,
    EnergyEstimate,
    EnergyProfile,
    LayerCost,
    LayerEnergy,
    MacEnergy,
    available_profiles,
    compute_class,
    energy_report_dict,
    estimate_energy,
    estimate_from_layers,
    layer_costs,
    load_profile,
)
from torchslim.measure.latency import (
    LatencyComparison,
    LatencyStats,
    RuntimeTimer,
    compare_latency,
    measure_latency,
)
from torchslim.measure.macs import MacCount, count_macs
from torchslim.measure.params import LayerParams, count_layer_parameters, count_nonzero, count_parameters
from torchslim.measure.payback import energy_section
from torchslim.measure.power import (
    EnergyMeasurement,
    NotMeasurable,
    RaplCounter,
    measure_energy,
    rapl_delta_uj,
    rapl_domains,
)
from torchslim.measure.run_energy import RunEnergy, RunEnergyMeter
from torchslim.measure.size import directory_bytes, state_dict_bytes
from torchslim.measure.stats import LayerStats, ModelStats

__all__ = [
    "RunEnergy",
    "RunEnergyMeter",
    "energy_section",
    "Agreement",
    "COMPUTE_CLASSES",
    "DEFAULT_PROFILE",
    "EnergyEstimate",
    "EnergyMeasurement",
    "EnergyProfile",
    "EvalStats",
    "LatencyComparison",
    "LatencyStats",
    "LayerCost",
    "LayerEnergy",
    "LayerParams",
    "LayerStats",
    "MacCount",
    "MacEnergy",
    "ModelStats",
    "NotMeasurable",
    "RaplCounter",
    "RuntimeTimer",
    "SPARSE_KERNEL_ATTRIBUTE",
    "analyze",
    "available_profiles",
    "compare_latency",
    "compare_models",
    "compute_class",
    "cosine",
    "count_layer_parameters",
    "count_macs",
    "count_nonzero",
    "count_parameters",
    "directory_bytes",
    "energy_report_dict",
    "estimate_energy",
    "estimate_from_layers",
    "evaluate",
    "head_mismatch",
    "kl_divergence",
    "layer_costs",
    "load_profile",
    "measure_energy",
    "measure_latency",
    "num_threads",
    "rapl_delta_uj",
    "rapl_domains",
    "sqnr_db",
    "state_dict_bytes",
]
