"""`precision auto` follows a table of measured choices per device kind (genlab.device)."""

import json

import pytest
import torch

from genlab.errors import GenlabError
from genlab import device as dev
from genlab.device import (PRECISION_TABLE, cpu_flags, cpu_kind, device_kind, load_precision_table,
                                 measured_choice, use_bf16, use_channels_last)

CPU = torch.device("cpu")


@pytest.fixture
def kind(monkeypatch):
    """Pretend this CPU is of a given kind (and has bf16 units, so the table alone decides)."""
    def set_kind(name: str, bf16_units: bool = True):
        monkeypatch.setattr(dev, "device_kind", lambda device: name)
        monkeypatch.setattr(dev, "hardware_bf16", lambda device: bf16_units)
    return set_kind


@pytest.fixture
def table(tmp_path, monkeypatch):
    """A precision table of one's own in place of the committed one."""
    def write(content: dict):
        path = tmp_path / "precision.json"
        path.write_text(json.dumps(content))
        monkeypatch.setattr(dev, "PRECISION_TABLE", path)
        return path
    return write


def test_the_committed_table_holds_the_measured_kinds():
    t = load_precision_table(PRECISION_TABLE)
    # AVX-512 BF16: bf16 training measured 5.7 vs 3.7 steps/s; H200: bf16 + channels_last 0.90x / 0.68x
    assert t["cpu:avx512_bf16"]["train"]["bf16"] is True and t["cpu:avx512_bf16"]["train"]["channels_last"] is False
    assert t["cpu:avx2"]["train"]["bf16"] is False and t["cpu:avx2"]["sample"]["bf16"] is False
    for task in ("train", "sample"):
        assert t["cuda:NVIDIA H200"][task]["bf16"] is False and t["cuda:NVIDIA H200"][task]["channels_last"] is False
    for kind_entry in t.values():
        for task in ("train", "sample"):
            e = kind_entry[task]
            assert e["measured"] and e["date"] and e["command"]  # every choice says what decided it


def test_lookup_follows_the_table_per_task(kind, table):
    table({"cpu:fastbf16": {"train": {"bf16": True, "channels_last": True, "measured": "x", "date": "d"},
                            "sample": {"bf16": False, "channels_last": False, "measured": "x", "date": "d"}}})
    kind("cpu:fastbf16")
    assert use_bf16("auto", CPU) is True and use_channels_last("auto", CPU) is True
    assert use_bf16("auto", CPU, task="sample") is False and use_channels_last("auto", CPU, task="sample") is False
    assert measured_choice(CPU, "train") == {"bf16": True, "channels_last": True}


def test_an_unknown_device_kind_runs_fp32(kind, table):
    table({"cpu:avx512_bf16": {"train": {"bf16": True, "channels_last": True}}})
    kind("cuda:Some Future GPU")
    assert use_bf16("auto", CPU) is False and use_channels_last("auto", CPU) is False
    assert use_bf16("auto", CPU, task="sample") is False
    kind("cpu:avx512_bf16")
    assert use_bf16("auto", CPU, task="sample") is False  # a kind without a sampling entry: fp32 too


def test_explicit_settings_override_the_table(kind, table):
    table({"cpu:x": {"train": {"bf16": True, "channels_last": True}}})
    kind("cpu:x")
    assert use_bf16("fp32", CPU) is False and use_channels_last("off", CPU) is False
    kind("cpu:y")
    assert use_bf16("bf16", CPU) is True and use_channels_last("on", CPU) is True


def test_the_table_never_turns_on_bf16_the_device_lacks(kind, table):
    table({"cpu:x": {"train": {"bf16": True, "channels_last": False}}})
    kind("cpu:x", bf16_units=False)
    assert use_bf16("auto", CPU) is False


def test_bad_settings_and_tables_are_one_clear_line(tmp_path, monkeypatch):
    with pytest.raises(GenlabError, match="choose auto, bf16 or fp32"):
        use_bf16("fp16", CPU)
    with pytest.raises(GenlabError, match="choose auto, on or off"):
        use_channels_last("yes", CPU)
    with pytest.raises(GenlabError, match="unknown task"):
        measured_choice(CPU, "eval")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(GenlabError, match="genlab bench --precision"):
        load_precision_table(bad)
    assert load_precision_table(tmp_path / "missing.json") == {}


def test_device_kinds():
    assert cpu_kind({"fpu", "avx2", "avx512f", "avx512_bf16"}) == "avx512_bf16"
    assert cpu_kind({"avx2", "amx_bf16", "avx512_bf16"}) == "amx_bf16"
    assert cpu_kind({"avx2"}) == torch.backends.cpu.get_cpu_capability().lower()  # no bf16 flag: torch's ISA
    assert cpu_flags("processor\t: 0\nflags\t\t: fpu avx2 avx512_bf16\n") == {"fpu", "avx2", "avx512_bf16"}
    assert cpu_flags("Features\t: fp asimd bf16\n") == {"fp", "asimd", "bf16"}  # ARM's /proc/cpuinfo
    assert device_kind(CPU).startswith("cpu:")
    assert device_kind(torch.device("meta")) == "meta"


def test_remeasure_writes_a_valid_entry(tmp_path, one_thread, capsys):
    """`genlab bench --precision --quick` times the four ways on tiny sizes and writes this kind's entry."""
    from genlab.cli.main import main

    path = tmp_path / "precision.json"
    path.write_text(json.dumps({"cuda:Other": {"train": {"bf16": True, "channels_last": True}}}))
    assert main(["bench", "--precision", "--quick", "--table", str(path)]) == 0
    t = load_precision_table(path)
    assert t["cuda:Other"]["train"]["bf16"] is True  # other kinds are kept
    entry = t[device_kind(CPU)]
    for task in ("train", "sample"):
        e = entry[task]
        assert isinstance(e["bf16"], bool) and isinstance(e["channels_last"], bool)
        assert e["command"].startswith("genlab bench --precision --quick") and e["date"]
        assert "speed vs fp32 NCHW" in e["measured"] and all(s > 0 for s in e["seconds"].values())
        fastest = min(e["seconds"], key=e["seconds"].get)
        chosen = " + ".join(["bf16" if e["bf16"] else "fp32"] + ["channels_last"] * e["channels_last"])
        assert chosen in (fastest, "fp32")  # the fastest way, or fp32 when nothing beat it by the margin
    assert f"Precision choice for {device_kind(CPU)}" in capsys.readouterr().out


def test_choose_needs_a_margin_over_fp32():
    from genlab.bench.precision import choose

    assert choose({(False, False): 1.0, (True, False): 0.97}, margin=0.05) == (False, False)
    assert choose({(False, False): 1.0, (True, False): 0.90, (True, True): 0.80}, margin=0.05) == (True, True)
    assert choose({(False, False): 1.0, (False, True): 1.2}, margin=0.05) == (False, False)


def test_quick_remeasure_refuses_the_committed_table(capsys):
    from genlab.cli.main import main

    assert main(["bench", "--precision", "--quick"]) == 2
    assert "give --table FILE" in capsys.readouterr().err
    assert main(["bench", "--precision", "--quality", "--table", "x.json"]) == 2
    assert main(["bench", "--precision", "--minutes", "3", "--table", "x.json"]) == 2
    assert "--minutes: not options of `genlab bench --precision`" in capsys.readouterr().err
