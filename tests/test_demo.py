from genlab.demo import demo_text


def test_text_demo_trains_offline_and_shows_before_and_after(tmp_path, capsys):
    demo_text(tmp_path, seconds=4, progress=False)
    out = capsys.readouterr().out
    assert "before training" in out and "after " in out and "val loss" in out
    run = tmp_path / "text"
    assert (run / "model.safetensors").is_file() and (run / "loss.png").is_file()
    assert any((run / "samples").iterdir())
