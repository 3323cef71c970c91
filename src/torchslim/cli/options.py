"""The command line's shared option declarations (typer reads them from the command signatures)."""

from __future__ import annotations

from pathlib import Path

import typer

ModelArg = typer.Argument(..., help="A built-in model name (see `torchslim list`) or a torchslim artifact directory.")
WeightsOpt = typer.Option(None, "--weights", help="A .safetensors or state-dict file for a built-in architecture.")
DATA_HELP = (
    "A built-in dataset (fashion-mnist, digits, tweets) or a path: a folder of images (class subfolders = labels; "
    "loose images = unlabelled, judged by agreement with the original model), a .npz/.csv table, a .txt file "
    "of sentences, a folder saved by Hugging Face datasets' save_to_disk, or hf:NAME[:CONFIG] from the local cache."
)
DataOpt = typer.Option(None, "--data", help=DATA_HELP)
DataRequiredOpt = typer.Option(..., "--data", help=DATA_HELP)
PreprocessOpt = typer.Option(
    None,
    "--preprocess",
    help="Image preprocessing for a folder when the model carries none: size=224,mean=127,std=128[,channels=1|3].",
)
MaxDropOpt = typer.Option(
    0.02,
    "--max-drop",
    min=0.0,
    max=1.0,
    help="Allowed accuracy drop (or 1 - top-1 agreement without labels) before the report warns; 0.02 = 2 points.",
)
StrictOpt = typer.Option(False, "--strict", help="Exit with code 3 when the report has a warning.")
TrainSamplesOpt = typer.Option(None, "--train-samples", min=1, help="Use at most N training samples (quick runs).")
EvalSamplesOpt = typer.Option(None, "--eval-samples", min=1, help="Use at most N evaluation samples (quick runs).")
ThreadsOpt = typer.Option(None, "--threads", min=1, help="Torch threads for training and measurement.")
DataRootOpt = typer.Option(
    None, "--data-root", help="Directory holding the dataset files (default: the standard locations)."
)
NumClassesOpt = typer.Option(
    None, "--num-classes", min=1, help="Classes of a built-in model's head (e.g. 3 for minilm-l6 on tweets)."
)
SensitivityOutOpt = typer.Option(
    None, "--out", help="Where --sensitivity writes sensitivity.json/.png and report.html."
)
TrainOutOpt = typer.Option(..., "--out", help="Artifact directory to write.")
CompressOutOpt = typer.Option(..., "--out", help="Artifact directory to write (with report.json).")
OverridesOpt = typer.Option([], "--set", help="Dotted override, e.g. steps.0.config.lr=0.01 (repeatable).")
DistillOutOpt = typer.Option(..., "--out", help="Artifact directory for the trained student (with report.json).")
FeaturesOpt = typer.Option([], "--feature", help="teacher_module:student_module[:loss] or auto[:loss] (repeatable).")
OnnxOpt = typer.Option(..., "--onnx", help="ONNX file to write (int8 QDQ for quantized layers, else float).")
ReportDirArg = typer.Argument(..., help="An artifact directory with report.json.")
DemoOutOpt = typer.Option(Path("runs/demo"), "--out", help="Where the demo writes its artifacts.")
AllowNonfiniteOpt = typer.Option(
    False, "--allow-nonfinite", help="Load weights that hold NaN or Inf (refused by default)."
)
CheckpointEveryOpt = typer.Option(
    None, "--checkpoint-every", min=1, help="Write a resumable checkpoint every N steps (default: every epoch)."
)
LatencyBatchOpt = typer.Option(1, "--latency-batch", min=1, help="Batch size the latency is measured on.")
TrainBatchOpt = typer.Option(128, "--train-batch-size", min=1, help="Batch size of training and fine-tuning.")
ForceOpt = typer.Option(False, "--force", help="Replace an artifact that already exists in --out.")
RENAMED_FLAGS = {
    "--batch-size": "--batch-size had a different meaning per command and is gone: use --latency-batch (the batch "
    "latency is timed on), --train-batch-size (the training batch) or --parity-batch (export's parity check)."
}
"""Flags that no longer exist -> the one-line message naming what replaced them."""
