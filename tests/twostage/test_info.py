"""``twostage info``: one JSON line of params and MACs per network, for presets of every stage."""

import json

import pytest
import torch

from shared.flops import cost
from twostage.cli import main


def info(capsys, *argv):
    code = main(["info", *argv])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize(
    ("preset", "networks"),
    [
        ("adatgan-cifar10-lee", {"generator", "discriminator"}),
        ("vqgan-tiny", {"tokenizer", "discriminator"}),
        ("gpt-tiny", {"prior"}),
        ("adatgan-prior-tiny", {"generator", "discriminator"}),
    ],
)
def test_info_prints_one_json_line(capsys, preset, networks):
    code, out, err = info(capsys, preset)
    assert code == 0 and err == ""
    assert out.count("\n") == 1
    data = json.loads(out)
    assert set(data) == networks
    for entry in data.values():
        assert set(entry) == {"params", "macs"}
        assert isinstance(entry["params"], int) and entry["params"] > 0 and entry["macs"] > 0


def test_info_adatgan_generator_matches_thesis(capsys):
    data = json.loads(info(capsys, "adatgan-cifar10-lee")[1])
    assert data["generator"]["params"] == pytest.approx(20.2e6, rel=0.03)
    assert data["generator"]["macs"] == pytest.approx(0.92e9, rel=0.03)


def test_info_unknown_preset_is_one_line_error(capsys):
    code, out, err = info(capsys, "no-such-preset")
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and "unknown preset 'no-such-preset'" in err
    assert "adatgan-cifar10" in err and "vqgan-tiny" in err and "gpt-tiny" in err


def test_cost_counts_a_linear_layer():
    got = cost(torch.nn.Linear(10, 20), torch.randn(1, 10))
    assert got == {"params": 220, "macs": 200}
