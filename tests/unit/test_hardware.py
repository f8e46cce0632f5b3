"""Precision resolution per machine, with the capabilities injected (no such hardware needed)."""

from __future__ import annotations

import logging

import pytest
import torch

from utilann.hardware import Hardware, choose_precision, detect, resolve_precision

BF16_CPU = Hardware(
    device="cpu",
    cpu_model="Intel(R) Xeon(R) Platinum 8480+",
    cpu_capability="AVX512",
    cpu_bf16_units=("AMX", "AVX512-BF16"),
)
AVX2_CPU = Hardware(device="cpu", cpu_model="AMD EPYC 7B12", cpu_capability="AVX2")
# AVX512 without AVX512-BF16 (Skylake-SP): oneDNN accepts bf16 but converts per instruction.
AVX512_CPU = Hardware(device="cpu", cpu_model="Xeon Gold 6148", cpu_capability="AVX512")
A100 = Hardware(device="cuda", cpu_capability="AVX2", gpu_name="NVIDIA A100", gpu_bf16=True)
V100 = Hardware(device="cuda", cpu_capability="AVX2", gpu_name="Tesla V100", gpu_bf16=False)


@pytest.mark.parametrize(
    ("hw", "requested", "expected"),
    [
        (BF16_CPU, "auto", "bf16"),
        (AVX2_CPU, "auto", "fp32"),
        (AVX512_CPU, "auto", "fp32"),
        (A100, "auto", "bf16"),
        (V100, "auto", "fp32"),  # fp16 only when asked
        (AVX2_CPU, "bf16", "bf16"),  # asked explicitly: honoured (with a warning)
        (V100, "fp16", "fp16"),
        (A100, "fp16", "fp16"),
        (BF16_CPU, "fp16", "fp32"),  # CPU fp16: fp32 with a warning
        (AVX2_CPU, "fp16", "fp32"),
        (BF16_CPU, "fp32", "fp32"),
        (A100, "fp32", "fp32"),
    ],
)
def test_resolution_table(hw, requested, expected):
    chosen = resolve_precision(requested, hw)
    assert (chosen.requested, chosen.name) == (requested, expected)
    assert (
        chosen.dtype
        == {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[expected]
    )


def test_reasons_name_the_capability():
    assert "AVX2" in resolve_precision("auto", AVX2_CPU).reason
    assert "no native bf16" in resolve_precision("auto", AVX2_CPU).reason
    assert "emulates" in resolve_precision("bf16", AVX2_CPU).reason
    assert "needs CUDA" in resolve_precision("fp16", BF16_CPU).reason
    assert "AMX" in BF16_CPU.describe() and "AVX2" in AVX2_CPU.describe()
    assert "A100" in A100.describe()


def test_unknown_precision_is_an_error():
    with pytest.raises(ValueError, match="precision must be one of"):
        resolve_precision("int8", BF16_CPU)


def test_detect_on_this_machine_and_the_log_line(caplog):
    hw = detect("cpu")
    assert hw.device == "cpu" and hw.cpu_capability == torch.backends.cpu.get_cpu_capability()
    if not torch.ops.mkldnn._is_mkldnn_bf16_supported():
        assert hw.cpu_bf16_units == ()
    with caplog.at_level(logging.INFO, logger="utilann.hardware"):
        chosen = choose_precision("auto", "cpu", "encoding")
    (record,) = caplog.records
    assert record.getMessage().startswith(f"encoding precision auto -> {chosen.name}: ")
    assert f"capability {hw.cpu_capability}" in record.getMessage()
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="utilann.hardware"):
        choose_precision("fp16", "cpu", "training")
    assert caplog.records[0].levelno == logging.WARNING
