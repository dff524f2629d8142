"""The QLoRA page: the flow diagram and memory picture's widgets, starting the lab, drawing a finished run."""
import pytest

from tests.app.conftest import app_page, drawn_run

TINY = {"task": "facts", "variants": "qlora,lora", "steps": 2, "batch_size": 2, "eval_every": 2, "eval_limit": 16,
        "r": 2}


def total_gb(at, i: int) -> float:
    return float(at.metric[i].value.split()[0])


@pytest.mark.parametrize("lang", ["en", "zh"])
def test_page_renders_flow_and_memory(data_dir, lang):
    at = app_page("qlora", lang).run()
    assert not at.exception, at.exception
    assert not at.error
    lora16, qlora4 = total_gb(at, 0), total_gb(at, 1)
    assert qlora4 < 48 < lora16                        # 65B: the NF4 bar falls under the 48 GB line
    assert any("flashcards?card=qlora-" in m.value for m in at.markdown)


def test_widgets_change_the_picture(data_dir):
    at = app_page("qlora").run()
    before = total_gb(at, 1)
    at.checkbox(key="pic.dq").uncheck().run()
    no_dq = total_gb(at, 1)
    assert no_dq - before == pytest.approx(3.0, abs=0.4)    # ~3 GB of constants at 65B
    at.select_slider(key="pic.seq").set_value(8192).run()
    long_seq = total_gb(at, 1)
    assert long_seq > no_dq                                 # activations grow with the sequence
    at.selectbox(key="pic.model").set_value("llama-2-7b").run()
    assert not at.exception and total_gb(at, 1) < long_seq / 2


def test_bad_rank_is_an_error_naming_the_field(data_dir):
    at = app_page("qlora").run()
    at.number_input(key="pic.r").set_value(0).run()
    assert not at.exception
    assert any("**r**" in e.value and "1..1024" in e.value for e in at.error)


def test_finished_run_is_drawn(data_dir):
    at, rid, _ = drawn_run(app_page("qlora"), "qlora", TINY)
    tables = [df.value for df in at.dataframe]
    assert list(tables[0].iloc[:, 0]) == ["qlora", "lora"]
    assert len(tables[1]) == 4                             # unmerged + three merges
    assert any("Paged optimizers" in i.value for i in at.info)
