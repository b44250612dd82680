import pytest

from genlab.core.config import build_config, config_to_toml, load_config, parse_set, save_config
from genlab.core.errors import GenlabError


def test_flags_map_to_fields_and_override_the_config_file(tmp_path):
    f = tmp_path / "run.toml"
    f.write_text('[model]\nname = "gpt"\nn_layer = 6\n[train]\nlr = 0.01\nbatch_size = 4\n')
    cfg = build_config(f, {"lr": 0.002, "data": "notes/", "max_steps": 7, "model": "gpt"}, ["model.n_head=2", "train.ema_decay=0.99"])
    assert cfg.train.lr == 0.002  # the flag wins over the file
    assert cfg.train.batch_size == 4  # the file wins over the default
    assert cfg.model.n_layer == 6 and cfg.model.n_head == 2
    assert cfg.data.source == "notes/" and cfg.train.max_steps == 7 and cfg.train.ema_decay == 0.99


@pytest.mark.parametrize(
    "sets, named",
    [
        (["train.learning_rate=1"], "train.learning_rate: unknown key"),
        (["model.n_layr=3"], "model.n_layr: unknown key (did you mean model.n_layer?)"),
        (["train.max_stpes=50"], "train.max_stpes: unknown key (did you mean train.max_steps?)"),
        (["sample.temprature=1"], "sample.temprature: unknown key (did you mean sample.temperature?)"),
        (["model.name=transformer"], "unknown family 'transformer'"),
        (["train.batch_size=lots"], "train.batch_size"),
        (["data.val_fraction=1.5"], "data.val_fraction"),
    ],
)
def test_bad_keys_and_values_are_errors_that_name_them(sets, named):
    with pytest.raises(GenlabError) as e:
        build_config(None, {}, sets)
    assert named in str(e.value)
    assert "\n" not in str(e.value)


def test_model_section_is_checked_by_its_family():
    # n_head is a transformer field: an LSTM config must refuse it.
    with pytest.raises(GenlabError, match="model.n_head: unknown key"):
        build_config(None, {"model": "lstm"}, ["model.n_head=4"])
    cfg = build_config(None, {"model": "gru"}, ["model.n_layer=3"])
    assert cfg.model.name == "gru" and cfg.model.n_layer == 3


def test_toml_round_trip_keeps_every_field(tmp_path):
    cfg = build_config(None, {"model": "lstm", "max_time": 12.5, "device": "cpu"}, ["sample.top_k=0", "data.include=['*.md']"])
    save_config(cfg, tmp_path / "config.toml")
    again = load_config(tmp_path / "config.toml")
    assert again == cfg
    assert config_to_toml(again) == config_to_toml(cfg)


def test_set_values_are_read_as_toml_else_strings():
    assert parse_set("a.b=3") == ("a.b", 3)
    assert parse_set("a=0.5") == ("a", 0.5)
    assert parse_set("a=true") == ("a", True)
    assert parse_set("a=[1, 2]") == ("a", [1, 2])
    assert parse_set("data.source=my notes/x.txt") == ("data.source", "my notes/x.txt")
    with pytest.raises(GenlabError, match="expected key=value"):
        parse_set("novalue")


def test_unreadable_config_file_names_the_file(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("[train\nlr = ")
    with pytest.raises(GenlabError, match="bad.toml: not valid TOML"):
        build_config(bad)
    with pytest.raises(GenlabError, match="missing.toml: no such config file"):
        build_config(tmp_path / "missing.toml")
