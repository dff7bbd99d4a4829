"""Run the rules on a model for a set of targets, and word the result (onnx only, no torch)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import onnx

from padim_edge import metadata
from padim_edge.compat.rules import BLOCKING, FAILS, NOTE, NUMBERS, RULES
from padim_edge.compat.targets import TARGETS, Target
from padim_edge.compat.view import GraphView, build_view
from padim_edge.onnx_files import graph_outputs

#: Occurrences shown per finding (the count says how many there are).
EXAMPLES = 3
QOPERATOR_EXEMPTION = (
    "INT8 QOperator variant: CPU-only by design, not checked for TensorRT (its QLinearConv / com.microsoft "
    "QLinearAdd are not TensorRT ops; under onnxruntime's TensorRT EP they run on the CPU EP with the same "
    "numbers). For TensorRT use padim-calibrate --int8 --format qdq"
)
INT8_HEAD_EXEMPTION = (
    "int8 head (uint8 QuantizeLinear + MatMulInteger): CPU-only by design, not checked for TensorRT "
    "(integer MatMul is not a TensorRT op; under onnxruntime's TensorRT EP the head runs on the CPU EP). "
    "The int8 head is for the CPU EP; for TensorRT use --head-precision fp16 or fp32 (padim-export, or "
    "padim-calibrate --head-precision on an existing model)"
)


class CheckError(ValueError):
    """The model file cannot be read."""


@dataclass(frozen=True)
class Finding:
    """One rule that hit on one target.

    Attributes:
        rule: Rule name.
        effect: ``fails``, ``changes numbers`` or ``note``.
        count: Occurrences in the graph.
        examples: The first few occurrences.
        summary: What the rule finds.
        source: Where the facts come from.
    """

    rule: str
    effect: str
    count: int
    examples: list[str]
    summary: str
    source: str

    def to_json(self) -> dict[str, object]:
        """A JSON-ready dict."""
        return dict(self.__dict__)


@dataclass(frozen=True)
class TargetReport:
    """The findings of one target (or why it is exempt)."""

    target: Target
    findings: list[Finding]
    exempt: str | None = None

    @property
    def blocking(self) -> list[Finding]:
        """Findings that fail or change numbers (none for an exempt target)."""
        return [] if self.exempt else [f for f in self.findings if f.effect in BLOCKING]

    @property
    def status(self) -> str:
        """``ok``, ``notes``, ``changes numbers``, ``fails`` or ``exempt``."""
        if self.exempt:
            return "exempt"
        effects = {f.effect for f in self.findings}
        for effect in (FAILS, NUMBERS):
            if effect in effects:
                return effect
        return "notes" if NOTE in effects else "ok"

    def to_json(self) -> dict[str, object]:
        """A JSON-ready dict."""
        return {
            "target": self.target.name,
            "where": self.target.where,
            "status": self.status,
            "exempt": self.exempt,
            "findings": [f.to_json() for f in self.findings],
        }


@dataclass
class Report:
    """Every requested target's findings for one model."""

    source: str
    opset: int
    ir_version: int
    description: str
    targets: list[TargetReport] = field(default_factory=list)
    inference_error: str | None = None

    @property
    def ok(self) -> bool:
        """No requested target fails or changes numbers."""
        return not any(t.blocking for t in self.targets)

    def to_json(self) -> dict[str, object]:
        """A JSON-ready dict."""
        return {
            "model": self.source,
            "opset": self.opset,
            "ir_version": self.ir_version,
            "model_description": self.description,
            "ok": self.ok,
            "shape_inference_error": self.inference_error,
            "targets": [t.to_json() for t in self.targets],
        }


def check_target(view: GraphView, target: Target, *, exempt: str | None = None) -> TargetReport:
    """Apply every rule that has an effect on ``target``."""
    findings = []
    for rule in RULES.values():
        effect = rule.effects.get(target.name)
        if effect is None:
            continue
        hits = rule.check(view, target)
        if hits:
            findings.append(Finding(rule.name, effect, len(hits), hits[:EXAMPLES], rule.summary, rule.source))
    return TargetReport(target=target, findings=findings, exempt=exempt)


def check_proto(
    proto: onnx.ModelProto, targets: list[Target] | None = None, *, source: str = "model"
) -> Report:
    """Check a loaded model (external data need not be loaded) for ``targets`` (default: all)."""
    view = build_view(proto)
    props = {p.key: p.value for p in proto.metadata_props}
    try:
        info = metadata.parse(props, source=source, outputs=graph_outputs(proto))
        description = info.description
        cpu_only = [
            reason
            for reason, applies in (
                (QOPERATOR_EXEMPTION, info.get("quant_format") == "qoperator"),
                (INT8_HEAD_EXEMPTION, info.head_precision == "int8"),
            )
            if applies
        ]
    except metadata.MetadataError as exc:  # a padim-edge model with a bad key: one line, as the runtime says
        raise CheckError(str(exc)) from exc
    except metadata.NotAPadimModelError:
        description, cpu_only = "not a padim-edge model (checked as a plain ONNX graph)", []
    report = Report(
        source=source,
        opset=view.opset,
        ir_version=int(proto.ir_version),
        description=description,
        inference_error=view.inference_error,
    )
    for target in targets if targets is not None else list(TARGETS.values()):
        exempt = " | ".join(cpu_only) if cpu_only and target.tensorrt else None
        report.targets.append(check_target(view, target, exempt=exempt))
    return report


def check_file(path: str | Path, targets: list[Target] | None = None) -> Report:
    """Check an ``.onnx`` file (its external-data file is not read: sizes come from the references).

    Raises:
        CheckError: Missing or unreadable file.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckError(f"model file not found: {path}")
    try:
        proto = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # protobuf decode errors have several types
        raise CheckError(f"{path} is not a readable ONNX model: {str(exc).splitlines()[0][:200]}") from exc
    return check_proto(proto, targets, source=str(path))


def format_report(report: Report, *, sources: bool = True) -> list[str]:
    """The lines ``padim-check`` prints."""
    lines = [
        f"model   {report.source}: {report.description}",
        f"graph   opset {report.opset}, IR version {report.ir_version}",
    ]
    if report.inference_error:
        lines.append(f"note    shape inference failed ({report.inference_error}); types as declared")
    for target in report.targets:
        lines.append(f"{target.target.name:<17} {target.status.upper()}  ({target.target.where})")
        if target.exempt:
            lines.append(f"    {target.exempt}")
        for finding in target.findings:
            lines.append(f"    [{finding.effect}] {finding.rule}: {finding.summary} ({finding.count}x)")
            lines += [f"        {example}" for example in finding.examples]
            if finding.count > len(finding.examples):
                lines.append(f"        ... {finding.count - len(finding.examples)} more")
            if sources:
                lines.append(f"        why: {finding.source}")
    return lines


def tensorrt_summary(report: Report) -> list[str]:
    """One line per TensorRT target, for the export summary."""
    lines = []
    for target in report.targets:
        if not target.target.tensorrt:
            continue
        problems = [f"{f.rule} ({f.effect})" for f in target.blocking]
        state = "ok" if not problems else "; ".join(problems)
        if target.exempt:
            state = "exempt: a CPU-only variant (padim-check MODEL says why)"
        lines.append(f"TensorRT {target.target.version:<4} {state}")
    return lines


#: Width of the label column of the padim-export and padim-calibrate summaries.
LABEL = 14


#: The one TensorRT line of a model that was not exported for TensorRT (``MODEL``: the model's path).
TENSORRT_HINT = (
    "not a TensorRT form (any frame size, antialiased resize); for TensorRT export with --target tensorrt "
    "--input-size HxW (the camera's frame size), then run padim-check on that model"
)


def tensorrt_lines(model: str | Path, size: tuple[int, int] | None) -> list[str]:
    """The TensorRT lines of the padim-export and padim-calibrate summaries.

    A model exported for TensorRT (``size`` given) gets what ``padim-check`` says about each TensorRT
    version; any other model one line on how to get a TensorRT form (nothing is checked: the default
    graph's antialiased resize is not TensorRT's, whatever the variant).

    Args:
        model: The ``.onnx`` just written.
        size: ``(H, W)`` of a TensorRT-target model (``None``: a graph for any frame size).
    """
    if size is None:
        return [f"{'tensorrt':<{LABEL}}{TENSORRT_HINT}"]
    from padim_edge.compat.targets import TARGETS

    report = check_file(model, [t for t in TARGETS.values() if t.tensorrt])
    lines = [f"{'tensorrt':<{LABEL}}{line}" for line in tensorrt_summary(report)]
    lines.append(f"{'':<{LABEL}}built for input {size[0]}x{size[1]} frames only (the runtime refuses others)")
    return lines
