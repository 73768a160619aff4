"""cytorch.course: every exercise accepts its answer, refuses wrong ones with a hint that does
not give the answer away, says what form an answer takes, and lets an unanswered notebook run;
every exercise is asked in a notebook and solved in notebooks/solutions."""
import json
import pathlib
import re

import pytest

from cytorch import course

EXERCISES = course._EXERCISES
NOTEBOOKS = pathlib.Path(__file__).resolve().parents[1] / "notebooks"


@pytest.mark.parametrize("name", sorted(EXERCISES))
def test_the_expected_answer_is_accepted_and_explained(name, capsys):
    assert course.check(name, EXERCISES[name].expected) is None
    assert capsys.readouterr().out.startswith(f"{name}: correct. ")


def _wrong(expected, kind):
    if kind in ("int", "number"):
        return expected + 7
    if kind == "shape":
        return tuple(v + 1 for v in expected)
    if kind == "array":
        import numpy as np
        return (np.asarray(expected, dtype=float) + 1).tolist()
    if kind == "set":
        return set(expected) | {99}
    return expected + "x"


@pytest.mark.parametrize("name", sorted(EXERCISES))
def test_a_wrong_answer_gets_a_hint_not_the_answer(name):
    exercise = EXERCISES[name]
    with pytest.raises(course.WrongAnswer) as info:
        course.check(name, _wrong(exercise.expected, exercise.kind))
    message = str(info.value)
    assert message.startswith(f"{name}: ") and "Hint: " in message
    assert exercise.hint in message
    shown = str(exercise.expected) if exercise.kind != "shape" else str(tuple(exercise.expected))
    assert shown not in message.replace(str(_wrong(exercise.expected, exercise.kind)), "")
    assert not re.search(r"\banswer is\b", message)


@pytest.mark.parametrize("name", sorted(EXERCISES))
def test_classic_slips_are_named(name):
    for wrong, why in EXERCISES[name].mistakes:
        with pytest.raises(course.WrongAnswer, match="classic slip") as info:
            course.check(name, wrong)
        assert why in str(info.value)


def test_answers_of_the_wrong_form_say_which_form():
    with pytest.raises(course.WrongAnswer, match="should be a tuple of 3 ints .* got '64x64'"):
        course.check("conv_output_volume", "64x64")
    with pytest.raises(course.WrongAnswer, match="should be an array of shape \\(2, 2\\), not "
                                                 "\\(4,\\)"):
        course.check("conv_4x4", [4, 3, 3, 4])
    with pytest.raises(course.WrongAnswer, match="should be a whole number"):
        course.check("conv_params", 760.5)
    with pytest.raises(course.WrongAnswer, match="should be a number"):
        course.check("conv_params", "760")


def test_unanswered_prints_the_question_and_does_not_raise(capsys):
    course.check("pool_output", None)
    assert capsys.readouterr().out == (f"pool_output: not answered yet. "
                                       f"{course.question('pool_output')}\n")


def test_unknown_names_suggest_the_closest():
    with pytest.raises(KeyError, match="no exercise named 'output_volume'; did you mean "
                                       "'conv_output_volume'"):
        course.check("output_volume", 1)


def test_numbers_compare_within_tolerance_and_sets_in_any_order():
    course.check("dropout_scale", 1.25 + 1e-9)
    course.check("strides_that_fit", [3, 1])
    course.check("entry_point_group", "  Cytorch.Layers ")


def _checked_names(path):
    cells = json.loads(path.read_text())["cells"]
    code = "\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "code")
    return re.findall(r"course\.check\(\s*\"(\w+)\"", code)


def test_every_exercise_is_asked_in_its_notebook_and_solved_in_solutions():
    if not NOTEBOOKS.is_dir():
        pytest.skip("no notebooks/ folder (installed without the source tree)")
    for name, exercise in EXERCISES.items():
        notebook = NOTEBOOKS / f"{exercise.notebook}.ipynb"
        solution = NOTEBOOKS / "solutions" / f"{exercise.notebook}.ipynb"
        assert name in _checked_names(notebook), f"{name} is not asked in {notebook.name}"
        assert name in _checked_names(solution), f"{name} is not solved in solutions/"
    asked = {n for p in NOTEBOOKS.glob("*.ipynb") for n in _checked_names(p)}
    assert asked <= set(EXERCISES)


def test_notebooks_are_stored_without_outputs():
    if not NOTEBOOKS.is_dir():
        pytest.skip("no notebooks/ folder (installed without the source tree)")
    paths = sorted(NOTEBOOKS.glob("*.ipynb")) + sorted(NOTEBOOKS.glob("solutions/*.ipynb"))
    assert len(paths) >= 14
    for path in paths:
        for cell in json.loads(path.read_text())["cells"]:
            if cell["cell_type"] == "code":
                assert cell["outputs"] == [] and cell["execution_count"] is None, path.name
