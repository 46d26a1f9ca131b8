"""The default training precision: bf16 autocast where the hardware multiplies bf16."""

from __future__ import annotations

from pathlib import Path

import pytest

from retina_lightning import precision
from retina_lightning.precision import cpu_native_bf16, default_precision, describe_precision


@pytest.fixture(autouse=True)
def _no_forced_precision(monkeypatch):
    """These tests check the hardware-based choice, also when the suite runs under
    ``RETINA_PRECISION=32-true``."""
    monkeypatch.delenv(precision.PRECISION_ENV, raising=False)


ZEN4 = "processor\t: 0\nflags\t\t: fpu sse2 avx2 avx512f avx512_bf16 avx512_vnni\n"
ZEN2 = "processor\t: 0\nflags\t\t: fpu sse2 avx2 fma\n"
SAPPHIRE = "processor\t: 0\nflags\t\t: fpu avx512f amx_bf16 amx_tile\n"


def test_cpu_flags_decide_native_bf16():
    assert cpu_native_bf16(ZEN4) and cpu_native_bf16(SAPPHIRE)
    assert not cpu_native_bf16(ZEN2)
    assert not cpu_native_bf16("")


@pytest.mark.parametrize(("native", "expected"), [(True, "bf16-mixed"), (False, "32-true")])
def test_default_on_cpu_follows_the_flags(monkeypatch, native, expected):
    monkeypatch.setattr(precision, "cpu_native_bf16", lambda: native)
    monkeypatch.setattr(precision.torch.cuda, "is_available", lambda: False)
    assert default_precision("cpu") == expected
    assert default_precision("auto") == expected
    assert default_precision("mps") == "32-true"


@pytest.mark.parametrize(("bf16", "expected"), [(True, "bf16-mixed"), (False, "32-true")])
def test_default_on_gpu_follows_bf16_support(monkeypatch, bf16, expected):
    monkeypatch.setattr(precision.torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(precision.torch.cuda, "is_bf16_supported", lambda: bf16)
    assert default_precision("gpu") == expected
    assert default_precision("auto") == expected


def test_the_start_line_names_the_choice_and_the_override():
    line = describe_precision("bf16-mixed", "cpu")
    assert "bf16-mixed" in line and "natively" in line and "--trainer.precision=32-true" in line
    assert "float32" in line  # evaluation


def test_cli_applies_the_default_and_respects_an_explicit_choice(tmp_path, monkeypatch, capsys):
    from helpers import TINY_CLI

    from retina_lightning.cli import main

    monkeypatch.setattr(precision, "cpu_native_bf16", lambda: True)
    config = str(Path(__file__).resolve().parents[1] / "configs/synthetic/unet.yaml")
    args = ["fit", "--config", config, *TINY_CLI, "--runs_dir", str(tmp_path)]
    cli = main([*args, "--trainer.accelerator=cpu"])
    assert cli.trainer.precision == "bf16-mixed"
    assert "[retina] precision bf16-mixed" in capsys.readouterr().err
    cli = main([*args, "--trainer.accelerator=cpu", "--trainer.precision=32-true"])
    assert cli.trainer.precision == "32-true"


def test_retina_precision_forces_the_default(monkeypatch):
    """``RETINA_PRECISION=32-true make test`` runs the suite as a CPU without native bf16
    does (issue 25 item 6); a typo is named."""
    monkeypatch.setattr(precision, "cpu_native_bf16", lambda: True)
    monkeypatch.setattr(precision.torch.cuda, "is_available", lambda: False)
    monkeypatch.delenv(precision.PRECISION_ENV, raising=False)
    assert default_precision("cpu") == "bf16-mixed"
    monkeypatch.setenv(precision.PRECISION_ENV, "32-true")
    assert default_precision("cpu") == "32-true"
    assert "$RETINA_PRECISION" in describe_precision("32-true", "cpu")
    monkeypatch.setenv(precision.PRECISION_ENV, "fp32")
    with pytest.raises(ValueError, match="RETINA_PRECISION='fp32'"):
        default_precision("cpu")
